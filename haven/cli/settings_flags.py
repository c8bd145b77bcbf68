"""Derive CLI flags from the :class:`~haven.settings.Settings` fields.

One source of truth: a setting gets its flag name (``--context-length``), type, bounds,
choices and help text from the pydantic field, so the CLI can never drift from the
settings class. A flag left out means "whatever the environment / default says".
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo

from haven.settings import Settings


def _unwrap_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    low = high = None
    for meta in info.metadata:
        for attr in ("ge", "gt"):
            if getattr(meta, attr, None) is not None:
                low = getattr(meta, attr)
        for attr in ("le", "lt"):
            if getattr(meta, attr, None) is not None:
                high = getattr(meta, attr)
    return low, high


def _click_type(annotation: Any, info: FieldInfo) -> click.ParamType | None:
    low, high = _bounds(info)
    if annotation is int:
        return click.IntRange(None if low is None else int(low), None if high is None else int(high))
    if annotation is float:
        return click.FloatRange(low, high)
    if annotation is Path:
        return click.Path(path_type=Path)
    if typing.get_origin(annotation) is Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)])
    if annotation in (str, SecretStr):
        return click.STRING
    return None


def settings_option(name: str) -> click.Option:
    """A click option for one Settings field."""
    info = Settings.model_fields[name]
    annotation = _unwrap_optional(info.annotation)
    flag = "--" + name.replace("_", "-")
    help_text = f"{info.description} [env: HAVEN_{name.upper()}]"
    if annotation is bool:
        return click.Option([f"{flag}/--no-{name.replace('_', '-')}", name], default=None, help=help_text)
    if typing.get_origin(annotation) is list:
        return click.Option([flag, name], multiple=True, default=None, help=help_text)
    click_type = _click_type(annotation, info)
    if click_type is None:  # pragma: no cover - a new field type must be taught here
        raise TypeError(f"no CLI flag type for setting {name!r} ({annotation!r})")
    return click.Option([flag, name], type=click_type, default=None, help=help_text)


def add_settings_options(fields: Iterable[str]) -> Callable[[click.Command], click.Command]:
    """Decorator for a click command: one option per named setting."""

    def decorate(command: click.Command) -> click.Command:
        command.params.extend(settings_option(name) for name in fields)
        return command

    return decorate


def settings_from_options(options: dict[str, Any]) -> Settings:
    """Settings from env/defaults, overridden by the flags the user actually gave."""
    overrides = {
        key: value
        for key, value in options.items()
        if key in Settings.model_fields and value is not None and value != ()
    }
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise click.BadParameter(f"{field}: {first['msg']}") from None
