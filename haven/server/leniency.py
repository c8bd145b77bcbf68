"""The leniency policy for request fields nobody defines (see docs/compatibility.md).

By default such a field is ignored, named in the ``X-Haven-Ignored-Fields`` response header and logged,
so a client that sends something new keeps working and its developer can still see what Haven did not
use. ``HAVEN_STRICT_REQUESTS=true`` turns them into 400s naming the field ("Unrecognized request argument
supplied"). Fields with a wrong type or an out-of-range value are 400s either way.
"""

from __future__ import annotations

import functools
import logging
import typing
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from fastapi import Response
from pydantic import BaseModel

from haven.chat.offload import off_loop_if_long
from haven.errors import InvalidRequestError
from haven.settings import Settings

HEADER = "X-Haven-Ignored-Fields"
log = logging.getLogger("haven.server.requests")


def check_unknown(fields: Sequence[str], settings: Settings, route: str) -> list[str]:
    """``fields`` (unknown ones), refused in strict mode, logged otherwise."""
    if fields and settings.strict_requests:
        raise InvalidRequestError(f"Unrecognized request argument supplied: {fields[0]}.", param=fields[0])
    if fields:
        log.info("%s: ignored unknown request fields: %s", route, ", ".join(fields))
    return list(fields)


def mark_ignored(response: Response, fields: Sequence[str]) -> Response:
    if fields:
        response.headers[HEADER] = header_value(fields)
    return response


def header_value(fields: Sequence[str]) -> str:
    """The field names as a valid header value: a client chooses them, so anything outside printable ASCII
    (a control character would make the whole response unsendable) is percent-encoded; at most 1,000 bytes."""
    return ", ".join(quote(field, safe="!#$%&'*+-.^_`|~()[]/:;<=>?@{}") for field in fields)[:1000]


async def find_unknown(model: BaseModel) -> list[str]:
    """:func:`unknown_fields`, in a worker thread when the body carries a long list (walking 10,000 messages
    is tens of milliseconds of pure Python, which must not hold the event loop)."""
    lists = [v for v in (getattr(model, name) for name in _nested_fields(type(model))) if isinstance(v, list)]
    return await off_loop_if_long(max(lists, key=len, default=None), unknown_fields, model)


def unknown_fields(model: BaseModel, prefix: str = "") -> list[str]:
    """Dotted paths of every field of ``model`` (and the models inside it) that no schema defines (the
    request models keep them aside with ``extra="allow"``)."""
    found = [f"{prefix}{key}" for key in (model.model_extra or {})]
    for name in _nested_fields(type(model)):
        found.extend(_unknown_in(getattr(model, name), f"{prefix}{name}"))
    return found


@functools.cache
def _nested_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``cls`` whose type can hold a model (a model, a list of them, a union with one): the only
    ones the walk visits. A chat request has some forty fields and a message a dozen, nearly all scalars:
    visiting every one cost more than validating the request."""
    return tuple(name for name, field in cls.model_fields.items() if _can_hold_model(field.annotation))


def _can_hold_model(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_can_hold_model(arg) for arg in typing.get_args(annotation))


def _unknown_in(value: Any, path: str) -> list[str]:
    if isinstance(value, BaseModel):
        return unknown_fields(value, f"{path}.")
    if isinstance(value, list):
        return [f for i, item in enumerate(value) for f in _unknown_in(item, f"{path}[{i}]")]
    return []
