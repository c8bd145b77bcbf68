"""JSON request bodies that routes parse themselves, so a large one is decoded and validated off the event loop.

FastAPI parses a ``body: Model`` parameter on the event loop: a 1.7 MB chat of 50,000 messages then holds every
other client (and ``/health``) for as long as ``json.loads`` plus pydantic take (issue 11 item 2). Routes that
can receive such bodies take the raw :class:`~starlette.requests.Request` instead and call
:func:`parse_body`, which hands bodies over :data:`OFF_LOOP_BYTES` to a worker thread. Errors are raised as
FastAPI's own :class:`~fastapi.exceptions.RequestValidationError` with FastAPI's ``("body", …)`` locations, so the
client sees exactly the messages it saw when FastAPI parsed the body. :func:`openapi_body` keeps such a route's
request schema in ``/openapi.json`` (named components through :func:`add_body_components`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

M = TypeVar("M", bound=BaseModel)

# Decoding and validating a body this large takes milliseconds; a thread hop costs tens of microseconds.
OFF_LOOP_BYTES = 64 << 10


async def parse_body(request: Request, model: type[M]) -> M:
    """The request's JSON body validated as ``model``; bodies over OFF_LOOP_BYTES are parsed in a thread."""
    raw = await request.body()
    if len(raw) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(decode_body, raw, model)
    return decode_body(raw, model)


def decode_body(raw: bytes, model: type[M]) -> M:
    """``raw`` as ``model``, or RequestValidationError shaped as FastAPI raises it for a ``body: model`` parameter.

    JSON nested thousands deep raises RecursionError, which the app's handler answers with a 400."""
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ]  # fmt: skip
        ) from None
    except UnicodeDecodeError:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", 0),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": "the body is not UTF-8 text"},
                }
            ]  # fmt: skip
        ) from None
    if not isinstance(data, dict):
        raise RequestValidationError(
            [
                {
                    "type": "model_attributes_type",
                    "loc": ("body",),
                    "input": data,
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                }
            ]  # fmt: skip
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None


# Models documented by reference (``openapi_body(..., component=True)``): add_body_components() publishes them.
_COMPONENTS: dict[str, type[BaseModel]] = {}
_REF = "#/components/schemas/{model}"


def openapi_body(model: type[BaseModel], *, component: bool = False) -> dict[str, Any]:
    """OpenAPI ``requestBody`` (for ``openapi_extra``) of a route that parses its body itself.

    ``component``: refer to ``#/components/schemas/<Model>`` (named, as FastAPI does for a declared body; the
    app must call :func:`add_body_components` on its schema), else the schema is inlined."""
    if component:
        _COMPONENTS[model.__name__] = model
        schema: dict[str, Any] = {"$ref": _REF.format(model=model.__name__)}
    else:
        schema = _inline(model)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def add_body_components(openapi: dict[str, Any]) -> dict[str, Any]:
    """Adds the schemas of component bodies (and the models they use) to ``openapi``'s components, in place.
    A name FastAPI already published for another model keeps FastAPI's schema only if it is the same one."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, model in _COMPONENTS.items():
        schema = model.model_json_schema(ref_template=_REF)
        for sub, definition in {**schema.pop("$defs", {}), name: schema}.items():
            existing = schemas.setdefault(sub, definition)
            if existing != definition:
                raise RuntimeError(f"two request models are named {sub!r} in the OpenAPI schema")
    return openapi


def _inline(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(definitions[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result
