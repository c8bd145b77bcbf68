"""Ollama-compatible HTTP routes (``/api/*``): parse, call :mod:`.serving`, map errors to ``{"error": …}``.

Bodies are parsed here rather than by FastAPI so that every bad request gets Ollama's error shape
(``{"error": "..."}`` with a 400), not FastAPI's 422 detail list. Generating endpoints stream NDJSON by
default (``"stream": true`` unless the client says otherwise), like Ollama.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from haven import __version__
from haven.errors import HavenError, InvalidRequestError
from haven.server.errors import haven_error_body, haven_error_response
from haven.server.ollama import protocol as p
from haven.server.ollama import serving
from haven.server.ollama.serving import OLLAMA_COMPAT_VERSION, OllamaService, details_from, ndjson

router = APIRouter(prefix="/api", tags=["ollama"])

M = TypeVar("M", bound=BaseModel)
NDJSON = "application/x-ndjson"


_OFF_LOOP_BYTES = 64 << 10  # parsing and validating a body this big takes milliseconds: not on the event loop


async def _parse(request: Request, model: type[M]) -> M:
    raw = await request.body()
    if len(raw) > _OFF_LOOP_BYTES:
        return await asyncio.to_thread(_decode, raw, model)
    return _decode(raw, model)


def _decode(raw: bytes, model: type[M]) -> M:
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidRequestError(f"{where}: {first['msg']}.", param=where) from None


def _manager(request: Request) -> Any:
    return request.app.state.model_manager


def _service(request: Request) -> OllamaService:
    state = request.app.state
    return OllamaService(state.model_manager, state.settings, getattr(state, "metrics", None))


def _guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """Maps HavenError raised before a response starts to Ollama's error JSON (the app-wide mapping, so
    the routes answer the same when mounted without the app's exception handlers)."""

    async def endpoint(request: Request) -> Response:
        try:
            response: Response = await handler(request)
            return response
        except HavenError as exc:
            return haven_error_response(request.url.path, exc)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def _stream(chunks: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """NDJSON response. A pump task drains the generation while the previous write is in flight, and
    every line that piled up meanwhile goes out in one write: when tokens come faster than one write
    per token, the stream batches instead of falling behind the engine (see benchmarks/bench_http.py)."""

    async def body() -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for chunk in chunks:
                    queue.put_nowait(ndjson(chunk))
            except HavenError as exc:
                # Headers are gone already: Ollama reports mid-stream failures as a final {"error": …} line.
                queue.put_nowait(ndjson(haven_error_body(exc, ollama=True)))
            finally:
                queue.put_nowait(None)

        task = asyncio.get_running_loop().create_task(pump())
        try:
            done = False
            while not done:
                lines = [await queue.get()]
                while not queue.empty():
                    lines.append(queue.get_nowait())
                done = lines[-1] is None
                data = b"".join(line for line in lines if line is not None)
                if data:
                    yield data
            await task  # re-raises an unexpected error of the pump
        finally:
            if not task.done():
                # The client went away: cancelling the pump closes the chunk iterator, which cancels
                # the generation and frees its slot.
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return StreamingResponse(body(), media_type=NDJSON)


async def _first_then_rest(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Pull the first chunk before answering, so errors that happen at once get a real status code."""
    iterator = chunks.__aiter__()
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        return _empty()
    return _prepend(first, iterator)


async def _empty() -> AsyncIterator[dict[str, Any]]:
    return
    yield  # pragma: no cover - makes this an async generator


async def _prepend(first: dict[str, Any], rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    yield first
    async for chunk in rest:
        yield chunk


def _unload_fn(request: Request) -> Callable[[str], Any]:
    manager = _manager(request)
    return lambda name: manager.unload(name)


def _body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a route that parses its body itself (to answer with Ollama's errors)."""
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

    content = {"application/json": {"schema": inline(schema)}}
    return {"requestBody": {"required": True, "content": content}}


# --- generation ------------------------------------------------------------------------------------


@router.post("/chat", summary="Chat (Ollama)", openapi_extra=_body(p.ChatRequest))
@_guarded
async def chat(request: Request) -> Response:
    body = await _parse(request, p.ChatRequest)
    service = _service(request)
    if not body.messages:
        return JSONResponse(
            {
                **await service.load_only(body.model, body.keep_alive, unload=_unload_fn(request)),
                "message": {"role": "assistant", "content": ""},
            }
        )
    run = await service.start_chat(body)
    if body.stream:
        return _stream(await _first_then_rest(service.chunks(run, body.model, kind="chat")))
    return JSONResponse(await service.complete(run, body.model, kind="chat"))


@router.post("/generate", summary="Generate a completion (Ollama)", openapi_extra=_body(p.GenerateRequest))
@_guarded
async def generate(request: Request) -> Response:
    body = await _parse(request, p.GenerateRequest)
    service = _service(request)
    if not body.prompt and not body.system:
        result = await service.load_only(body.model, body.keep_alive, unload=_unload_fn(request))
        return JSONResponse({**result, "response": ""})
    run = await service.start_generate(body)
    if body.stream:
        return _stream(await _first_then_rest(service.chunks(run, body.model, kind="generate")))
    return JSONResponse(await service.complete(run, body.model, kind="generate"))


@router.post("/embed", summary="Embeddings (Ollama)", openapi_extra=_body(p.EmbedRequest))
@_guarded
async def embed(request: Request) -> Response:
    body = await _parse(request, p.EmbedRequest)
    return JSONResponse(await _service(request).embed(body))


@router.post(
    "/embeddings", summary="Embedding of one prompt (legacy Ollama endpoint)", openapi_extra=_body(p.EmbeddingsRequest)
)
@_guarded
async def embeddings(request: Request) -> Response:
    body = await _parse(request, p.EmbeddingsRequest)
    return JSONResponse(await _service(request).embeddings(body))


# --- models ----------------------------------------------------------------------------------------


def _store(request: Request) -> Any:
    return _manager(request).store


@router.get("/version", summary="Server version (Ollama)")
async def version() -> dict[str, str]:
    return {"version": OLLAMA_COMPAT_VERSION, "haven_version": __version__}


@router.get("/tags", summary="List local models (Ollama)")
@_guarded
async def tags(request: Request) -> Response:
    return JSONResponse({"models": await serving.list_models(_store(request))})


@router.post("/show", summary="Model details (Ollama)", openapi_extra=_body(p.ModelRequest))
@_guarded
async def show(request: Request) -> Response:
    body = await _parse(request, p.ModelRequest)
    if not body.ref:
        raise InvalidRequestError("model is required.", param="model")
    return JSONResponse(await serving.show_model(_store(request), _manager(request), body.ref))


@router.delete("/delete", summary="Delete a model (Ollama)", openapi_extra=_body(p.ModelRequest))
@_guarded
async def delete(request: Request) -> Response:
    body = await _parse(request, p.ModelRequest)
    if not body.ref:
        raise InvalidRequestError("model is required.", param="model")
    manager = _manager(request)
    await serving.delete_model(_store(request), manager, body.ref)
    return Response(status_code=200)


@router.get("/ps", summary="Loaded models (Ollama)")
@_guarded
async def ps(request: Request) -> Response:
    models = []
    for loaded in _manager(request).loaded():
        info = loaded.info
        expires = loaded.expires_at
        models.append(
            {
                "name": loaded.name,
                "model": loaded.name,
                "size": loaded.size_bytes,
                "digest": info.sha256,
                "details": details_from(info.architecture, info.parameter_count, info.quantization),
                # Far future for "forever", as Ollama does for a negative keep_alive.
                "expires_at": serving.iso_time(expires)
                if expires is not None and expires != math.inf
                else "2318-01-01T00:00:00Z",
                "size_vram": 0,
                "context_length": info.context_length,
            }
        )
    return JSONResponse({"models": models})


@router.post("/pull", summary="Pull a model (Ollama)", openapi_extra=_body(p.PullRequest))
@_guarded
async def pull(request: Request) -> Response:
    from haven.models.pull import pull as pull_model

    body = await _parse(request, p.PullRequest)
    if not body.ref:
        raise InvalidRequestError("model is required.", param="model")
    events = serving.pull_events(pull_model, _store(request), body.ref, request.app.state.settings)
    if body.stream:
        return _stream(await _first_then_rest(events))
    last: dict[str, Any] = {}
    async for event in events:
        last = event
    return JSONResponse(last)
