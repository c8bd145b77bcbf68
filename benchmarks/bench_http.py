"""HTTP-layer overhead: the same generations called on the engine directly and through a real uvicorn.

Three measurements (issue 4's acceptance):

1. **Added latency** (p50, short non-streamed generation): ``POST /api/chat`` to uvicorn on loopback vs
   ``engine.submit`` + draining the events, in one process and one event loop (so the client's own cost is
   counted against the HTTP layer: the number is an upper bound). Target ≤ 2 ms.
2. **Streaming overhead**: tokens/s of a long generation streamed as NDJSON vs drained directly. Target ≤ 3 %.
3. **Throughput** of a cheap GET (``/v1/models`` when the OpenAI router is in the app, else ``/api/tags``)
   from a load generator in a separate process (``wrk`` if installed, else asyncio + httpx with many
   connections). Target ≥ 1,000 requests/s.

The engine is a *paced* fake that emits a token every ``--token-ms`` milliseconds (default 2 ms, about the
decode speed of the tiny test model on one core): it isolates what the HTTP layer adds, and it keeps the
benchmark runnable on a 2-core machine shared with other work. Run: ``python -m benchmarks.bench_http``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from benchmarks.harness import BenchContext, Result
from haven.chat import prompt as chat_prompt
from haven.chat.backend import ChatRequest, Message
from haven.engine.protocol import (
    ChatPrompt,
    ChatTokens,
    EngineEvent,
    EngineStats,
    Finished,
    GenerationRequest,
    ModelEngine,
    ModelInfo,
    SamplingParams,
    TextDelta,
    Usage,
)
from haven.models.manifest import Manifest
from haven.models.names import parse_name
from haven.models.store import ModelStore
from haven.server.engine_config import engine_config
from haven.settings import Settings

MODEL = "bench:tiny"
INFO = ModelInfo(
    name=MODEL,
    architecture="qwen2",
    context_length=4096,
    training_context_length=4096,
    vocab_size=1000,
    embedding_length=8,
    parameter_count=1_000_000,
    quantization="F32",
    chat_template=None,
    bos_token=None,
    eos_token=None,
)


class PacedHandle:
    """Tokens produced by a worker thread at a steady rate and handed to the event loop, as a real engine's
    decode thread does (an ``asyncio.sleep`` per token would add the selector's millisecond rounding)."""

    def __init__(self, request: GenerationRequest, token_seconds: float) -> None:
        self.request = request
        self.token_seconds = token_seconds
        self.cancelled = False
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[EngineEvent] = asyncio.Queue()
        threading.Thread(target=self._decode, daemon=True).start()

    def _decode(self) -> None:
        count = self.request.sampling.max_tokens or 16
        start = time.perf_counter()
        for i in range(count):
            if self.cancelled:
                return
            delay = start + (i + 1) * self.token_seconds - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.loop.call_soon_threadsafe(self.queue.put_nowait, TextDelta(f" tok{i}"))
        finished = Finished("length", Usage(len(self.request.prompt_tokens), count))
        self.loop.call_soon_threadsafe(self.queue.put_nowait, finished)

    @property
    def request_id(self) -> str:
        return self.request.request_id

    async def events(self) -> AsyncIterator[EngineEvent]:
        while True:
            event = await self.queue.get()
            yield event
            if isinstance(event, Finished):
                return

    async def cancel(self) -> None:
        self.cancelled = True


@dataclass
class PacedEngine:
    token_seconds: float = 0.002
    info: ModelInfo = INFO

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return list(range(len(text.split())))

    def detokenize(self, tokens: Sequence[int]) -> str:
        return " ".join(map(str, tokens))

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> ChatPrompt:
        return ChatPrompt("".join(f"{m['role']}: {m['content']}\n" for m in messages))

    async def tokenize_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
        template: str | None = None,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> ChatTokens:
        # The engine protocol's one entry for chats (render + tokenize); inline here, the paced engine is free.
        prompt = self.render_chat(messages, tools=tools, add_generation_prompt=add_generation_prompt)
        return ChatTokens(tuple(self.tokenize(prompt.text)), prompt.text, False)

    async def tokenize_text(self, text: str, *, add_special: bool = True, parse_special: bool = False) -> list[int]:
        return self.tokenize(text)

    async def submit(self, request: GenerationRequest) -> PacedHandle:
        return PacedHandle(request, self.token_seconds)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0] * 8 for _ in texts]

    def stats(self) -> EngineStats:
        return EngineStats(slots_total=4, slots_in_use=0, queue_depth=0)

    async def close(self) -> None:
        pass


def _store(blob: Path) -> ModelStore:
    """A real store (in a temp dir) with one model, MODEL, whose "blob" is ``blob`` (the loader ignores it)."""
    store = ModelStore(Path(tempfile.mkdtemp(prefix="haven-bench-store-")))
    manifest = Manifest(
        name=MODEL,
        sha256="0" * 64,
        size=blob.stat().st_size,
        architecture="qwen2",
        parameter_count=1_000_000,
        quantization="F32",
        context_length=None,
        embedding_length=None,
        chat_template=None,
        template_safe=True,
        template_warning=None,
        bos_token=None,
        eos_token=None,
        special_tokens={},
        modified=datetime.now(UTC),
        source="bench",
    )
    with store._locked():
        store._write_manifest(parse_name(MODEL), manifest)
    return store


def build_app(engine: ModelEngine, blob: Path | None = None) -> FastAPI:
    """The server's real app (create_app: ModelManager, middleware, both APIs) serving ``engine`` as MODEL."""
    from haven.server.app import create_app

    # One benchmark client sends thousands of requests: no per-client limits (Haven's defaults, not overhead).
    settings = Settings(keep_alive_seconds=3600, log_level="warning", rate_limit_requests_per_minute=0,
                        rate_limit_tokens_per_minute=0, max_generations_per_client=0)  # fmt: skip
    store = _store(blob or Path(__file__))
    return create_app(settings, engine_loader=lambda path, *, name, sha256: engine, store=store)


def load_engine(kind: str, token_ms: float, model: Path | None) -> ModelEngine:
    """``paced``: the fake above; ``real``: llama.cpp on ``model`` (a tiny factory model by default)."""
    if kind == "paced":
        return PacedEngine(token_seconds=token_ms / 1000)
    from haven.engine.engine import load_engine as load_llama

    if model is None:
        from haven.models.factory import make_model

        model = Path(tempfile.gettempdir()) / "haven-bench-http-tiny.gguf"
        if not model.exists():
            make_model(model, arch="qwen2", size="tiny", quant="f32", template="qwen2.5", seed=0)
    settings = Settings(threads=1, parallel=2, context_length=1024)
    return load_llama(str(model), name=MODEL, sha256="", config=engine_config(settings))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _serve(app: FastAPI, port: int) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False, lifespan="off")
    )
    asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server


SAMPLING = {"temperature": 0.8, "seed": 1}
PROMPT = [{"role": "user", "content": "hello there"}]


async def _direct(engine: ModelEngine, max_tokens: int) -> tuple[float, int]:
    """The work /api/chat does minus HTTP: render, tokenize, submit, drain (the chat layer's prompt step)."""
    start = time.perf_counter()
    request = ChatRequest(MODEL, tuple(Message("user", m["content"]) for m in PROMPT))
    rendered = await chat_prompt.render(engine, request, "qwen", tools=None)
    sampling = SamplingParams(max_tokens=max_tokens, **SAMPLING)  # type: ignore[arg-type]
    handle = await engine.submit(
        GenerationRequest(rendered.tokens, sampling, reasoning_opened=rendered.reasoning_opened)
    )
    tokens = 0
    async for event in handle.events():
        if isinstance(event, Finished):
            tokens = event.usage.completion_tokens
    return time.perf_counter() - start, tokens


def _chat_body(max_tokens: int, stream: bool) -> dict[str, Any]:
    return {"model": MODEL, "messages": PROMPT, "stream": stream, "options": {"num_predict": max_tokens, **SAMPLING}}


class RawClient:
    """A keep-alive HTTP/1.1 client on one connection that does nothing but write bytes and split the answer.

    httpx spends about a millisecond of CPU per request, which would be charged to the server's HTTP layer
    under test; a real client's cost is not part of what the server adds.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawClient:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()

    async def post(self, path: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Sends a POST and yields the response body as it arrives (chunked or with Content-Length)."""
        assert self.reader is not None and self.writer is not None
        payload = json.dumps(body).encode()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        headers = head.lower()
        if b"transfer-encoding: chunked" in headers:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    return
                yield data[:-2]
        length = int(headers.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        yield await self.reader.readexactly(length)


async def _http(client: RawClient, max_tokens: int, stream: bool) -> tuple[float, int]:
    start = time.perf_counter()
    body = b""
    async for data in client.post("/api/chat", _chat_body(max_tokens, stream)):
        body += data  # streamed lines are only joined here: parsing them is the client's cost, not the server's
    last = json.loads(body.strip().rsplit(b"\n", 1)[-1])
    return time.perf_counter() - start, int(last["eval_count"])


def _client_process(port: int, conn: Any) -> None:
    """The HTTP client, in its own process as a real client would be (its CPU is not the server's):
    receives ``(max_tokens, stream, count)``, answers with ``[(seconds, tokens), …]``; None stops it."""

    async def serve_commands() -> None:
        async with RawClient(port) as client:
            while True:
                command = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
                if command is None:
                    return
                max_tokens, stream, count = command
                conn.send([await _http(client, max_tokens, stream) for _ in range(count)])

    asyncio.run(serve_commands())


async def latency_and_streaming(engine: ModelEngine, requests: int, stream_tokens: int) -> dict[str, Any]:
    app = build_app(engine)
    port = free_port()
    server = await _serve(app, port)
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    client = ctx.Process(target=_client_process, args=(port, there), daemon=True)
    client.start()
    loop = asyncio.get_running_loop()

    async def over_http(max_tokens: int, stream: bool, count: int) -> list[tuple[float, int]]:
        here.send((max_tokens, stream, count))
        answer: list[tuple[float, int]] = await loop.run_in_executor(None, here.recv)
        return answer

    results: dict[str, Any] = {}
    try:
        # Latency: the method - one process, the request interleaved with the direct call, so the
        # difference is what the HTTP layer adds (plus a minimal client), not OS scheduling between
        # processes (which dominates on a loaded 2-core machine).
        async with RawClient(port) as inproc:
            for _ in range(5):  # warm up both paths (the first HTTP request loads the model into the manager)
                await _direct(engine, 4)
                await _http(inproc, 4, False)
            direct: list[float] = []
            http: list[float] = []
            for _ in range(requests):
                direct.append((await _direct(engine, 4))[0])
                http.append((await _http(inproc, 4, False))[0])
        results["latency_direct_p50_ms"] = statistics.median(direct) * 1000
        results["latency_http_p50_ms"] = statistics.median(http) * 1000
        results["added_latency_p50_ms"] = results["latency_http_p50_ms"] - results["latency_direct_p50_ms"]

        # Streaming: the client reads from its own process, as a real one does, so its parsing does not
        # compete with the server for the GIL.
        await over_http(4, True, 2)
        rates_direct: list[float] = []
        rates_http: list[float] = []
        for _ in range(3):
            seconds, tokens = await _direct(engine, stream_tokens)
            rates_direct.append(tokens / seconds)
            ((seconds, tokens),) = await over_http(stream_tokens, True, 1)
            rates_http.append(tokens / seconds)
        results["stream_tokens_per_s_direct"] = statistics.median(rates_direct)
        results["stream_tokens_per_s_http"] = statistics.median(rates_http)
        results["streaming_overhead_pct"] = 100 * (
            1 - results["stream_tokens_per_s_http"] / results["stream_tokens_per_s_direct"]
        )
    finally:
        here.send(None)
        client.join(10)
        server.should_exit = True
        await asyncio.sleep(0.2)
        await app.state.model_manager.close()
    return results


# --- throughput ----------------------------------------------------------------------------------


def _server_process(port: int, ready: Any) -> None:
    app = build_app(PacedEngine())
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False, lifespan="off")
    server = uvicorn.Server(config)

    def signal_when_started() -> None:
        while not server.started:
            time.sleep(0.01)
        ready.set()

    threading.Thread(target=signal_when_started, daemon=True).start()
    server.run()


async def _connection(host: str, port: int, path: str, deadline: float) -> tuple[int, int]:
    """One keep-alive connection sending GETs back to back (a minimal HTTP/1.1 client: httpx itself
    tops out near the rate being measured, so it would benchmark the client, not the server)."""
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    done = errors = 0
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if status == 200:
                done += 1
            else:
                errors += 1
    finally:
        writer.close()
    return done, errors


async def _load(url: str, connections: int, seconds: float) -> tuple[int, int]:
    parsed = httpx.URL(url)
    deadline = time.perf_counter() + seconds
    results = await asyncio.gather(
        *(_connection(parsed.host, parsed.port or 80, parsed.raw_path.decode(), deadline) for _ in range(connections))
    )
    return sum(r[0] for r in results), sum(r[1] for r in results)


def _load_process(url: str, connections: int, seconds: float, out: Any) -> None:
    out.put(asyncio.run(_load(url, connections, seconds)))


def throughput(seconds: float, connections: int, path: str = "/v1/models") -> dict[str, Any]:
    port = free_port()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    server = ctx.Process(target=_server_process, args=(port, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("benchmark server did not start")
        url = f"http://127.0.0.1:{port}{path}"
        if shutil.which("wrk"):
            output = subprocess.run(
                ["wrk", f"-c{connections}", "-t2", f"-d{int(seconds)}s", url],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            rps = float(next(line for line in output.splitlines() if "Requests/sec" in line).split()[1])
            return {"path": path, "generator": "wrk", "requests_per_s": rps, "errors": 0}
        queue = ctx.Queue()
        load = ctx.Process(target=_load_process, args=(url, connections, seconds, queue))
        load.start()
        done, errors = queue.get(timeout=seconds + 60)
        load.join()
        return {"path": path, "generator": "asyncio", "requests_per_s": done / seconds, "errors": errors}
    finally:
        server.terminate()
        server.join(5)


def measure(
    *,
    engine: str = "real",
    token_ms: float = 2.0,
    model: Path | None = None,
    requests: int = 200,
    stream_tokens: int = 256,
    seconds: float = 5.0,
    connections: int = 32,
) -> dict[str, Any]:
    """All three measurements as one dict (see the module docs)."""

    async def latency() -> dict[str, Any]:
        llm = load_engine(engine, token_ms, model)
        try:
            return await latency_and_streaming(llm, requests, stream_tokens)
        finally:
            await llm.close()

    results = {"engine": engine, **asyncio.run(latency())}
    results.update({f"rps_{k}": v for k, v in throughput(seconds, connections).items()})
    return results


def run(ctx: BenchContext) -> list[Result]:
    """Rows for RESULTS.md (called by ``python -m benchmarks.run``)."""
    rows: list[Result] = []
    for engine in ("real", "paced"):
        ctx.log(f"bench_http: {engine} engine…")
        r = measure(
            engine=engine,
            requests=60 if ctx.quick else 200,
            stream_tokens=128 if ctx.quick else 256,
            seconds=3.0 if ctx.quick else 5.0,
        )
        what = "tiny qwen2 model, llama.cpp" if engine == "real" else "fake engine, 2 ms/token"
        rows += [
            Result(
                f"HTTP added latency p50, /api/chat 4 tokens ({what})",
                r["added_latency_p50_ms"],
                None,
                "",
                "ms",
                higher_is_better=False,
                limit=2.0,
                notes=f"direct {r['latency_direct_p50_ms']:.2f} ms, HTTP {r['latency_http_p50_ms']:.2f} ms",
            ),
            Result(
                f"streaming overhead, {r['stream_tokens_per_s_direct']:.0f} tok/s direct ({what})",
                r["streaming_overhead_pct"],
                None,
                "",
                "%",
                higher_is_better=False,
                limit=3.0,
                notes=f"HTTP NDJSON {r['stream_tokens_per_s_http']:.0f} tok/s",
            ),
        ]
    rows.append(
        Result(
            f"GET {r['rps_path']} requests/s ({r['rps_generator']} load generator, 32 connections)",
            r["rps_requests_per_s"],
            None,
            "",
            "req/s",
            limit=1000.0,
            notes=f"{r['rps_errors']} errors",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("real", "paced"), default="real", help="llama.cpp tiny model or fake")
    parser.add_argument("--model", type=Path, default=None, help="GGUF for --engine real (default: tiny factory)")
    parser.add_argument("--token-ms", type=float, default=2.0, help="paced engine: milliseconds per token")
    parser.add_argument("--requests", type=int, default=200, help="requests for the latency percentiles")
    parser.add_argument("--stream-tokens", type=int, default=256, help="tokens per streamed generation")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the throughput test")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections of the load generator")
    args = parser.parse_args(argv)
    results = measure(
        engine=args.engine,
        token_ms=args.token_ms,
        model=args.model,
        requests=args.requests,
        stream_tokens=args.stream_tokens,
        seconds=args.seconds,
        connections=args.connections,
    )
    results["pass_added_latency"] = results["added_latency_p50_ms"] <= 2.0
    results["pass_streaming_overhead"] = results["streaming_overhead_pct"] <= 3.0
    results["pass_rps"] = results["rps_requests_per_s"] >= 1000
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
