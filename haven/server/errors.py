"""One mapping from errors to HTTP responses for the whole app.

``HavenError`` subclasses carry their status, OpenAI ``type`` and ``code``; request-validation errors
become a 400 naming the offending field (OpenAI answers bad parameters with 400, and its SDK maps
that to ``BadRequestError``); routing errors (404/405) and unexpected exceptions get the same shape.
OpenAI's shape is ``{"error": {"message", "type", "param", "code"}}``; under ``/api/`` (Ollama's API)
the body is Ollama's ``{"error": "<message>"}`` instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from haven.errors import HavenError

log = logging.getLogger("haven.server.errors")


def error_response(
    path: str,
    status: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    # /api/v1/ is Haven's own API (accounts, conversations): OpenAI's error shape, not Ollama's.
    ollama = path.startswith("/api/") and not path.startswith("/api/v1/")
    body = error_body(message, ollama=ollama, error_type=error_type, code=code, param=param)
    return JSONResponse(body, status_code=status, headers=headers)


def error_body(
    message: str,
    *,
    ollama: bool,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """Ollama's ``{"error": message}``, or OpenAI's ``{"error": {message, type, param, code}}``."""
    if ollama:
        return {"error": message}
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def haven_error_body(exc: HavenError, *, ollama: bool) -> dict[str, Any]:
    """The error body of ``exc`` (also sent in-band when a stream fails after its 200)."""
    return error_body(exc.message, ollama=ollama, error_type=exc.error_type, code=exc.code, param=exc.param)


def haven_error_response(path: str, exc: HavenError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return error_response(
        path, exc.status_code, exc.message, error_type=exc.error_type, code=exc.code, param=exc.param, headers=headers
    )


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """(one readable sentence, the parameter) for the first validation problem."""
    errors = list(exc.errors())
    if not errors:
        return "the request is invalid.", None
    first = errors[0]
    kind = first.get("type", "")
    where = _field_path(tuple(first.get("loc", ())))
    if kind == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return f"the request body is not valid JSON{': ' + str(detail) if detail else ''}.", None
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {where}.", where or None
    if kind == "missing":
        if not where:
            return "the request body is missing (send a JSON object).", None
        return f"'{where}' is a required property.", where
    if kind == "model_attributes_type" and not where:
        return "the request body must be a JSON object (sent as Content-Type: application/json).", None
    msg = str(first.get("msg", "invalid value")).rstrip(".")
    if msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    return (f"{where}: {msg}." if where else f"{msg}."), where or None


def install_error_handlers(app: FastAPI) -> None:
    async def on_haven_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HavenError)
        if exc.status_code >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc.message)
        return haven_error_response(request.url.path, exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, param = validation_message(exc)
        return error_response(request.url.path, 400, message, code="invalid_request", param=param)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}."
            code = "not_found"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}."
            code = "method_not_allowed"
        else:
            message, code = str(exc.detail), None
        return error_response(request.url.path, exc.status_code, message, code=code, headers=exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return error_response(
            request.url.path, 500, "internal server error.", error_type="server_error", code="internal_error"
        )

    async def on_client_data_error(request: Request, exc: Exception) -> JSONResponse:
        # Both only arise from what a client sent (issue 11): JSON nested thousands deep, and lone
        # surrogates ("\ud800", valid JSON, not encodable text) reaching code that encodes.
        if isinstance(exc, RecursionError):
            message = "the request is nested too deeply."
        else:
            message = "the request contains a lone surrogate (e.g. \\ud800), which is not valid Unicode text."
        return error_response(request.url.path, 400, message, code="invalid_request")

    app.add_exception_handler(RecursionError, on_client_data_error)
    app.add_exception_handler(UnicodeEncodeError, on_client_data_error)
    app.add_exception_handler(HavenError, on_haven_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
