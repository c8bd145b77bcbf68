"""Ollama-compatible HTTP routes (``/api/*``): parse, call :mod:`.serving`, map errors to ``{"error": …}``.

Bodies are parsed here rather than by FastAPI so that every bad request gets Ollama's error shape
(``{"error": "..."}`` with a 400), not FastAPI's 422 detail list. Generating endpoints stream NDJSON by
default (``"stream": true`` unless the client says otherwise), like Ollama.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from haven import __version__
from haven.chat.backend import ChatBackend, TextRequest
from haven.chat.offload import off_loop_if_long
from haven.errors import HavenError, InvalidRequestError
from haven.models.store import ModelStore
from haven.server.errors import haven_error_body, haven_error_response
from haven.server.fair_share import ClientKeyedBackend, fair_share_key
from haven.server.json_body import OFF_LOOP_BYTES
from haven.server.json_body import openapi_body as _body
from haven.server.leniency import check_unknown, find_unknown, mark_ignored
from haven.server.model_manager import ModelManager
from haven.server.ollama import models, serving
from haven.server.ollama import protocol as p
from haven.server.ollama.serving import OLLAMA_COMPAT_VERSION

router = APIRouter(prefix="/api", tags=["ollama"])

M = TypeVar("M", bound=BaseModel)
NDJSON = "application/x-ndjson"




async def _parse(request: Request, model: type[M]) -> M:
    raw = await request.body()
    if len(raw) > OFF_LOOP_BYTES:
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


def _manager(request: Request) -> ModelManager:
    manager: ModelManager = request.app.state.model_manager
    return manager


def _backend(request: Request) -> ChatBackend:
    """The chat backend (``app.state.chat_backend``), the same one the OpenAI routes use."""
    backend: ChatBackend = request.app.state.chat_backend
    return ClientKeyedBackend(backend, fair_share_key(request.scope))  # the scheduler's fair share (issue 14)


async def _ignored(request: Request, body: BaseModel) -> list[str]:
    return check_unknown(await find_unknown(body), request.app.state.settings, request.url.path)


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


def ndjson(chunk: Mapping[str, Any]) -> bytes:
    return (json.dumps(chunk, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


# --- generation ------------------------------------------------------------------------------------


async def _load_only(request: Request, model: str, keep_alive: Any) -> dict[str, Any]:
    """Empty prompt/messages: Ollama preloads the model (or unloads it when keep_alive is 0)."""
    seconds = serving.keep_alive_seconds(keep_alive)
    manager = _manager(request)
    if seconds == 0:
        manager.store.get(model)
        await manager.unload(model)
        reason = "unload"
    else:
        await manager.get(model, keep_alive=seconds)
        reason = "load"
    return {"model": model, "created_at": serving.now_rfc3339(), "done": True, "done_reason": reason}


async def _generation(request: Request, run: serving.Run, stream: bool, ignored: list[str]) -> Response:
    if stream:
        return mark_ignored(_stream(await _first_then_rest(serving.chunks(run))), ignored)
    return mark_ignored(JSONResponse(await serving.complete(run)), ignored)


@router.post("/chat", summary="Chat (Ollama)", openapi_extra=_body(p.ChatRequest))
@_guarded
async def chat(request: Request) -> Response:
    body = await _parse(request, p.ChatRequest)
    ignored = await _ignored(request, body)
    if not body.messages:
        result = await _load_only(request, body.model, body.keep_alive)
        return JSONResponse({**result, "message": {"role": "assistant", "content": ""}})
    stream = await _backend(request).chat(await off_loop_if_long(body.messages, serving.chat_request, body))
    return await _generation(request, serving.Run(stream, body.model, "chat"), body.stream, ignored)


@router.post("/generate", summary="Generate a completion (Ollama)", openapi_extra=_body(p.GenerateRequest))
@_guarded
async def generate(request: Request) -> Response:
    body = await _parse(request, p.GenerateRequest)
    ignored = await _ignored(request, body)
    if not body.prompt and not body.system:
        result = await _load_only(request, body.model, body.keep_alive)
        return JSONResponse({**result, "response": ""})
    work = serving.generate_request(body)
    backend = _backend(request)
    stream = await (backend.complete(work) if isinstance(work, TextRequest) else backend.chat(work))
    return await _generation(request, serving.Run(stream, body.model, "generate"), body.stream, ignored)


@router.post("/embed", summary="Embeddings (Ollama)", openapi_extra=_body(p.EmbedRequest))
@_guarded
async def embed(request: Request) -> Response:
    body = await _parse(request, p.EmbedRequest)
    ignored = await _ignored(request, body)
    return mark_ignored(JSONResponse(await serving.embed(_backend(request), body)), ignored)


@router.post(
    "/embeddings", summary="Embedding of one prompt (legacy Ollama endpoint)", openapi_extra=_body(p.EmbeddingsRequest)
)
@_guarded
async def embeddings(request: Request) -> Response:
    body = await _parse(request, p.EmbeddingsRequest)
    ignored = await _ignored(request, body)
    return mark_ignored(JSONResponse(await serving.embeddings(_backend(request), body)), ignored)


# --- models ----------------------------------------------------------------------------------------


def _store(request: Request) -> ModelStore:
    return _manager(request).store


@router.get("/version", summary="Server version (Ollama)")
async def version() -> dict[str, str]:
    return {"version": OLLAMA_COMPAT_VERSION, "haven_version": __version__}


@router.get("/tags", summary="List local models (Ollama)")
@_guarded
async def tags(request: Request) -> Response:
    return JSONResponse({"models": models.list_models(_backend(request))})


def _model_ref(body: p.ModelRequest) -> str:
    if not body.ref:
        raise InvalidRequestError("model is required.", param="model")
    return body.ref


@router.post("/show", summary="Model details (Ollama)", openapi_extra=_body(p.ModelRequest))
@_guarded
async def show(request: Request) -> Response:
    body = await _parse(request, p.ModelRequest)
    return JSONResponse(models.show_model(_backend(request), _model_ref(body)))


@router.delete("/delete", summary="Delete a model (Ollama)", openapi_extra=_body(p.ModelRequest))
@_guarded
async def delete(request: Request) -> Response:
    body = await _parse(request, p.ModelRequest)
    await models.delete_model(_manager(request), _model_ref(body))
    return Response(status_code=200)


@router.post("/copy", summary="Copy a model under a new name (Ollama)", openapi_extra=_body(p.CopyRequest))
@_guarded
async def copy(request: Request) -> Response:
    body = await _parse(request, p.CopyRequest)
    await models.copy_model(_store(request), body.source, body.destination)
    return Response(status_code=200)


@router.post("/create", summary="Create a model from a blob or a model (Ollama)", openapi_extra=_body(p.CreateRequest))
@_guarded
async def create(request: Request) -> Response:
    body = await _parse(request, p.CreateRequest)
    return await _status(models.create_model(_store(request), body, request.app.state.settings), body.stream)


async def _status(events: AsyncIterator[dict[str, Any]], stream: bool) -> Response:
    """Progress lines (``{"status": …}``) streamed, or only the last one."""
    if stream:
        return _stream(await _first_then_rest(events))
    last: dict[str, Any] = {}
    async for event in events:
        last = event
    return JSONResponse(last)


_DIGEST_PARAM = {"parameters": [{"name": "digest", "in": "path", "required": True, "schema": {"type": "string"}}]}


@router.head("/blobs/{digest}", summary="Does the server have this blob? (Ollama)", openapi_extra=_DIGEST_PARAM)
@_guarded
async def blob_exists(request: Request) -> Response:
    models.check_blob(_store(request), request.path_params["digest"])
    return Response(status_code=200)


@router.post(
    "/blobs/{digest}",
    summary="Upload a blob (Ollama): the body is stored under its verified sha256",
    openapi_extra={
        **_DIGEST_PARAM,
        "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string"}}}},
    },
)
@_guarded
async def blob_upload(request: Request) -> Response:
    created = await models.receive_blob(_store(request), request.path_params["digest"], request.stream())
    return Response(status_code=201 if created else 200)


@router.post("/push", summary="Push a model (refused: Haven never uploads)")
@_guarded
async def push(request: Request) -> Response:
    raise InvalidRequestError(
        "pushing models is not supported: Haven never uploads anything; copy the GGUF file from the store instead.",
        param="model",
    )


@router.get("/ps", summary="Loaded models (Ollama)")
@_guarded
async def ps(request: Request) -> Response:
    return JSONResponse({"models": [models.ps_entry(m) for m in _manager(request).loaded()]})


@router.post("/pull", summary="Pull a model (Ollama)", openapi_extra=_body(p.PullRequest))
@_guarded
async def pull(request: Request) -> Response:
    from haven.models.pull import CancelToken
    from haven.models.pull import pull as pull_model

    body = await _parse(request, p.PullRequest)
    if not body.ref:
        raise InvalidRequestError("model is required.", param="model")
    cancel = CancelToken()  # set when the client goes away: the pull stops and frees its worker (issue 11 item 5)
    events = models.pull_events(pull_model, _store(request), body.ref, request.app.state.settings, cancel=cancel)
    if body.stream:
        return _stream(await _first_then_rest(events))
    watcher = asyncio.create_task(_cancel_on_disconnect(request, cancel))
    try:
        last: dict[str, Any] = {}
        async for event in events:
            last = event
    finally:
        watcher.cancel()
    return JSONResponse(last)


async def _cancel_on_disconnect(request: Request, cancel: Any) -> None:
    """A non-streaming pull has no writes to fail: poll for the client's disconnect instead."""
    while not await request.is_disconnected():
        await asyncio.sleep(0.25)
    cancel.cancel()
