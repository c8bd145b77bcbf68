"""A small OpenAI-compatible server that speaks vLLM's dialect, for scale-out tests: run it as a process.

``python -m tests.support.fake_vllm --port P --name NAME [--models m1,m2] [--chunk-delay S [--clock]]``. It answers
``/v1/chat/completions`` (streamed or not) with ``NAME: <last user message>``, reasoning in vLLM's
``reasoning`` field, usage in the last chunk; ``/v1/models``; ``/v1/embeddings``; ``/metrics`` with vLLM's
metric names; and records every request body it received (and each one's client port: its connection).
``POST /control {"mode": …}`` makes it misbehave: ``ok``, ``slow`` (0.2 s between chunks), ``fail_before`` (500
before any byte), ``fail_mid`` (drop the connection after two chunks), ``end_early`` (end the body
cleanly after two chunks, without a finish reason or ``[DONE]``), ``hang`` (send headers, then nothing),
``garbage`` (non-JSON chunks), ``huge`` (an oversized line), ``think_inline`` (reasoning as ``<think>`` tags in
content), ``error_event`` (an in-band ``{"error": …}`` chunk). ``GET /control`` returns the recorded requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


def build_app(name: str, models: list[str], chunk_delay: float = 0.0, clock: bool = False) -> Starlette:
    """``chunk_delay``: seconds between chunks, slept after each one, so every late wakeup of this process
    (a busy CPU) slows the stream; with ``clock``, chunk ``i`` leaves at ``start + i × chunk_delay`` instead, as
    an engine on its own hardware emits tokens on its own clock whatever its client's machine is doing."""
    state: dict[str, Any] = {"mode": "ok", "received": [], "running": 0, "peers": []}

    async def control(request: Request) -> Response:
        if request.method == "POST":
            state["mode"] = (await request.json())["mode"]
            return JSONResponse({"mode": state["mode"]})
        return JSONResponse({"mode": state["mode"], "received": state["received"], "peers": state["peers"]})

    async def list_models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "vllm"}
                                                        for m in models]})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(f'vllm:num_requests_running{{model_name="{models[0]}"}} {state["running"]}\n'
                                 f'vllm:num_requests_waiting{{model_name="{models[0]}"}} 0\n'
                                 f'vllm:kv_cache_usage_perc{{model_name="{models[0]}"}} 0.1\n')

    async def embeddings(request: Request) -> Response:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return JSONResponse({"object": "list", "data": [{"index": i, "embedding": [0.5, 0.5, float(i)]}
                                                        for i in range(len(inputs))],
                             "usage": {"prompt_tokens": 3 * len(inputs), "total_tokens": 3 * len(inputs)}})

    async def chat(request: Request) -> Response:
        body = await request.json()
        state["received"].append(body)
        state["peers"].append(request.client.port if request.client else None)  # which connection it came on
        mode = state["mode"]
        if body["model"] not in models:
            return JSONResponse({"object": "error", "message": f"The model `{body['model']}` does not exist.",
                                 "type": "NotFoundError", "code": 404}, status_code=404)
        if mode == "fail_before":
            return JSONResponse({"object": "error", "message": "engine dead", "type": "InternalServerError",
                                 "code": 500}, status_code=500)
        last = next((m["content"] for m in reversed(body["messages"]) if m["role"] == "user"), "")
        answer = f"{name}: {last}"
        if not body.get("stream"):
            return JSONResponse({"id": "x", "object": "chat.completion", "model": body["model"], "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer,
                                                                   "reasoning": "thinking"}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}})

        async def frames() -> AsyncIterator[bytes]:
            state["running"] += 1
            try:
                if mode == "hang":
                    await asyncio.sleep(3600)
                if mode == "garbage":
                    yield b"data: this is not json\n\n"
                    return
                if mode == "huge":
                    yield b"data: " + b"x" * (2 << 20) + b"\n\n"
                    return
                if mode == "error_event":
                    yield b'data: {"error": {"message": "out of KV cache", "type": "InternalServerError"}}\n\n'
                    return
                parts = [{"reasoning": "thinking"}] if mode != "think_inline" else [{"content": "<think>thinking"},
                                                                                       {"content": "</think>"}]
                parts += [{"content": word} for word in answer.split(" ") for word in (word + " ",)]
                loop = asyncio.get_running_loop()
                started = loop.time()
                for i, delta in enumerate(parts):
                    if clock and chunk_delay and i and mode != "slow":
                        await asyncio.sleep(max(0.0, started + i * chunk_delay - loop.time()))
                    if mode == "fail_mid" and i == 2:
                        raise RuntimeError("upstream crashed mid-stream")  # uvicorn drops the connection
                    if mode == "end_early" and i == 2:
                        return  # a well-formed end of the body, with neither a finish reason nor [DONE]
                    chunk = {"id": "x", "object": "chat.completion.chunk", "model": body["model"],
                             "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
                    if mode == "slow":
                        await asyncio.sleep(0.2)
                    elif chunk_delay and not clock:
                        await asyncio.sleep(chunk_delay)
                final = {"id": "x", "object": "chat.completion.chunk", "model": body["model"],
                         "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                yield f"data: {json.dumps(final)}\n\n".encode()
                usage = {"id": "x", "object": "chat.completion.chunk", "choices": [],
                         "usage": {"prompt_tokens": 5, "completion_tokens": len(parts), "total_tokens": 5 + len(parts),
                                   "prompt_tokens_details": {"cached_tokens": 2}}}
                yield f"data: {json.dumps(usage)}\n\n".encode()
                yield b"data: [DONE]\n\n"
            finally:
                state["running"] -= 1

        return StreamingResponse(frames(), media_type="text/event-stream")

    return Starlette(routes=[
        Route("/control", control, methods=["GET", "POST"]), Route("/v1/models", list_models),
        Route("/metrics", metrics), Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/health", lambda r: PlainTextResponse("ok")),
    ])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--models", default="remote-model")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between chunks (a paced model)")
    parser.add_argument("--clock", action="store_true", help="pace chunks on a fixed clock, not by sleeps after each")
    args = parser.parse_args()
    app = build_app(args.name, args.models.split(","), args.chunk_delay, args.clock)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
