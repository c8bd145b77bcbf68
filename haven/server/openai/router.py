"""OpenAI-compatible HTTP routes (``/v1``): parse with the protocol models, call :mod:`.serving`, respond.

Bodies are validated against :mod:`.protocol` by :func:`haven.server.json_body.parse_body` (large ones off the
event loop; the OpenAPI schema still documents them); validation and Haven errors become OpenAI error JSON in
:mod:`haven.server.errors`. Streaming answers
are Server-Sent Events. A client that disconnects while a non-streaming answer is being generated
cancels it (the route watches the connection); a dropped stream cancels through the SSE iterator.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from haven.chat.backend import ChatBackend
from haven.server.fair_share import ClientKeyedBackend, fair_share_key
from haven.server.json_body import openapi_body, parse_body
from haven.server.leniency import check_unknown, find_unknown, mark_ignored
from haven.server.ollama.protocol import parse_keep_alive
from haven.server.openai.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from haven.server.openai.responses import create_response
from haven.server.openai.responses_protocol import ResponsesRequest
from haven.server.openai.serving import OpenAIServing
from haven.server.streaming import with_keepalive

router = APIRouter(prefix="/v1", tags=["openai"])

T = TypeVar("T")
DISCONNECT_POLL_SECONDS = 0.25
CLIENT_CLOSED_REQUEST = 499  # nginx's code; the client never sees it, the request log does


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


def chat_backend(request: Request) -> ChatBackend:
    """The backend behind the routes (``app.state.chat_backend``): the seam where accounts, conversations
    or a remote upstream plug in."""
    backend: ChatBackend = request.app.state.chat_backend
    return ClientKeyedBackend(backend, fair_share_key(request.scope))  # the scheduler's fair share (issue 14)


def _serving(request: Request) -> OpenAIServing:
    return OpenAIServing(chat_backend(request), reasoning_field=request.app.state.settings.reasoning_field)


def _keep_alive(value: Any) -> float | None:
    seconds = parse_keep_alive(value)
    return -1.0 if seconds == float("inf") else seconds


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it (and so the generation) if the client goes away meanwhile."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _respond(result: dict[str, Any] | AsyncIterator[bytes]) -> Response:
    if isinstance(result, dict):
        return JSONResponse(result)
    return StreamingResponse(
        result,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _run(
    request: Request, ignored: list[str], work: Awaitable[dict[str, Any] | AsyncIterator[bytes]]
) -> Response:
    try:
        return mark_ignored(_respond(await _unless_disconnected(request, work)), ignored)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)


async def _ignored(request: Request, body: BaseModel) -> list[str]:
    return check_unknown(await find_unknown(body), request.app.state.settings, request.url.path)


@router.post(
    "/chat/completions",
    summary="Create a chat completion (OpenAI)",
    openapi_extra=openapi_body(ChatCompletionRequest, component=True),
)
async def chat_completions(request: Request) -> Response:
    body = await parse_body(request, ChatCompletionRequest)
    ignored = await _ignored(request, body)
    return await _run(request, ignored, _serving(request).chat(body, _keep_alive(body.keep_alive)))


@router.post(
    "/completions",
    summary="Create a text completion (OpenAI, legacy)",
    openapi_extra=openapi_body(CompletionRequest, component=True),
)
async def completions(request: Request) -> Response:
    body = await parse_body(request, CompletionRequest)
    ignored = await _ignored(request, body)
    return await _run(request, ignored, _serving(request).completion(body, _keep_alive(body.keep_alive)))


@router.post(
    "/embeddings", summary="Create embeddings (OpenAI)", openapi_extra=openapi_body(EmbeddingRequest, component=True)
)
async def embeddings(request: Request) -> Response:
    body = await parse_body(request, EmbeddingRequest)
    ignored = await _ignored(request, body)
    return await _run(request, ignored, _serving(request).embeddings(body))


@router.post(
    "/responses",
    summary="Create a response (OpenAI Responses API)",
    openapi_extra=openapi_body(ResponsesRequest, component=True),
)
async def responses(request: Request) -> Response:
    body = await parse_body(request, ResponsesRequest)
    ignored = await _ignored(request, body)

    async def work() -> Any:
        result = await create_response(chat_backend(request), body, request.app.state.response_store)
        return result if isinstance(result, dict) else with_keepalive(result)

    return await _run(request, ignored, work())


@router.get("/models", summary="List local models (OpenAI)")
async def list_models(request: Request) -> Response:
    return JSONResponse(_serving(request).list_models())


@router.get("/models/{model_id:path}", summary="One model (OpenAI)")
async def get_model(model_id: str, request: Request) -> Response:
    return JSONResponse(_serving(request).get_model(model_id))
