"""Model names: parse and validate ``name[:tag]`` (tag defaults to ``latest``).

A model name becomes a directory and a file name inside the store (``manifests/<name>/<tag>.json``),
so validation is about safety first: no path separators, no ``..``, no control characters, bounded
length, a small alphabet (letters, digits, ``.``, ``_``, ``-``). Names are case-insensitive and stored
lower-case, as Ollama does, so ``Qwen2.5:0.5B`` and ``qwen2.5:0.5b`` are one model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from haven.errors import InvalidModelNameError

DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 80
MAX_TAG_LENGTH = 64
_PART = re.compile(r"[a-z0-9][a-z0-9._-]*")


@dataclass(frozen=True)
class ModelName:
    name: str
    tag: str

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"


def _describe(raw: str) -> str:
    """The name as it can be printed on one line (control characters escaped)."""
    shown = raw if len(raw) <= 100 else raw[:100] + "…"
    return ascii(shown) if any(ord(c) < 32 or ord(c) == 127 for c in shown) else repr(shown)


def _check_part(raw: str, part: str, what: str, limit: int) -> None:
    if not part:
        raise InvalidModelNameError(f"invalid model name {_describe(raw)}: the {what} is empty")
    if len(part) > limit:
        raise InvalidModelNameError(
            f"invalid model name {_describe(raw)}: the {what} is longer than {limit} characters"
        )
    if ".." in part:
        raise InvalidModelNameError(f"invalid model name {_describe(raw)}: '..' is not allowed")
    if not _PART.fullmatch(part):
        raise InvalidModelNameError(
            f"invalid model name {_describe(raw)}: use letters, digits, '.', '_' and '-' "
            f"(starting with a letter or digit), plus one ':' before the tag"
        )


def parse_name(raw: str) -> ModelName:
    """``"Qwen2.5:0.5B"`` → ``ModelName("qwen2.5", "0.5b")``; ``"llama3"`` → tag ``latest``.

    Raises :class:`InvalidModelNameError` with one sentence saying what is wrong.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidModelNameError("invalid model name: the name is empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise InvalidModelNameError(f"invalid model name {_describe(raw)}: control characters are not allowed")
    if "/" in raw or "\\" in raw:
        raise InvalidModelNameError(f"invalid model name {_describe(raw)}: '/' and '\\' are not allowed")
    lowered = raw.lower()
    if lowered.count(":") > 1:
        raise InvalidModelNameError(f"invalid model name {_describe(raw)}: only one ':' (before the tag) is allowed")
    name, sep, tag = lowered.partition(":")
    _check_part(raw, name, "name", MAX_NAME_LENGTH)
    if sep:
        _check_part(raw, tag, "tag", MAX_TAG_LENGTH)
    return ModelName(name, tag if sep else DEFAULT_TAG)


MAX_REFERENCE_LENGTH = 1024  # a pull reference (hf.co/OWNER/REPO:QUANT, hf://OWNER/REPO/PATH.gguf) or URL


def check_reference(raw: str) -> str:
    """A pull reference bounded and printable before it is parsed or put in a URL (httpx refuses URLs
    longer than 65,536 characters with an exception no caller expects). Returns it stripped."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidModelNameError("invalid model reference: it is empty")
    if len(raw) > MAX_REFERENCE_LENGTH:
        raise InvalidModelNameError(
            f"invalid model reference {_describe(raw)}: longer than {MAX_REFERENCE_LENGTH:,} characters"
        )
    if any(ord(c) < 32 or ord(c) == 127 or c.isspace() for c in raw.strip()):
        raise InvalidModelNameError(f"invalid model reference {_describe(raw)}: control characters or spaces")
    return raw.strip()


def normalize_name(raw: str) -> str:
    """The canonical ``name:tag`` string of a user-supplied name."""
    return str(parse_name(raw))


def name_from_filename(filename: str) -> str:
    """A valid default name from a GGUF file name: ``Qwen2.5-0.5B-Q4_K_M.gguf`` → ``qwen2.5-0.5b-q4_k_m``."""
    stem = filename.rsplit("/", 1)[-1]
    if stem.lower().endswith(".gguf"):
        stem = stem[: -len(".gguf")]
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", stem.lower())
    cleaned = re.sub(r"\.{2,}", ".", cleaned).strip("._-")[:MAX_NAME_LENGTH].strip("._-")
    return cleaned or "model"
