"""Editing a model's request defaults from command-line words (``haven models set``).

``--param temperature=0.6`` is parsed with the type Ollama gives that option (an int option takes
``40``, a float option ``0.6`` or ``1``); unknown names and bad values are one-line errors naming the
known options, and nothing is written. ``--stop`` replaces the stop list; ``--unset`` removes one default;
``--reset`` starts from none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from haven.errors import InvalidRequestError
from haven.models.manifest import DEFAULT_PARAMETER_TYPES, ModelDefaults

MAX_SYSTEM_CHARS = 100_000
MAX_STOPS = 16


def parse_param(word: str) -> tuple[str, int | float]:
    """``"temperature=0.6"`` → ``("temperature", 0.6)``; ``"top_k=40"`` → ``("top_k", 40)``."""
    key, sep, raw = word.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or not raw:
        raise InvalidRequestError(f"--param {word!r}: use NAME=VALUE, e.g. temperature=0.6")
    expected = DEFAULT_PARAMETER_TYPES.get(key)
    if expected is None:
        raise InvalidRequestError(
            f"--param {key}: unknown option (known: {', '.join(sorted(DEFAULT_PARAMETER_TYPES))})"
        )
    try:
        value: int | float = int(raw) if expected is int else float(raw)
    except ValueError:
        kind = "a whole number" if expected is int else "a number"
        raise InvalidRequestError(f"--param {key}={raw}: the value must be {kind}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequestError(f"--param {key}={raw}: the value must be finite")
    return key, value


def edit_defaults(
    current: ModelDefaults,
    *,
    system: str | None = None,
    params: Sequence[str] = (),
    stops: Sequence[str] = (),
    unset: Sequence[str] = (),
    reset: bool = False,
) -> ModelDefaults:
    """The defaults after the edits (see the module docs); raises InvalidRequestError before any change."""
    base = ModelDefaults() if reset else current
    values: dict[str, Any] = {
        "system": base.system, "template": base.template, "stop": base.stop, "parameters": dict(base.parameters),
    }  # fmt: skip
    for key in unset:
        if key in ("system", "template"):
            values[key] = None
        elif key == "stop":
            values["stop"] = ()
        elif key in DEFAULT_PARAMETER_TYPES:
            values["parameters"].pop(key, None)
        else:
            raise InvalidRequestError(f"--unset {key}: not a default (system, stop, template or a parameter name)")
    if system is not None:
        if len(system) > MAX_SYSTEM_CHARS:
            raise InvalidRequestError(f"--system: at most {MAX_SYSTEM_CHARS:,} characters")
        values["system"] = system or None
    if stops:
        if len(stops) > MAX_STOPS or any(not s or len(s) > 200 for s in stops):
            raise InvalidRequestError(f"--stop: at most {MAX_STOPS} non-empty strings of up to 200 characters")
        values["stop"] = tuple(stops)
    for word in params:
        key, value = parse_param(word)
        values["parameters"][key] = value
    return ModelDefaults(**values)
