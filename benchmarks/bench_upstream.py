"""What Haven adds in front of a remote upstream: time to first token, streaming rate, routing throughput.

Fast fake vLLMs (``tests/support/fake_vllm.py``, each its own process) answer every chat with a stream of short
chunks, one pacing them by a sleep after each chunk, one on a fixed clock (see ``run``). The same client measures
each directly and through ``haven serve`` (its own process, the upstreams in ``upstreams.yaml``), alternating in
rounds so drift hits both. Targets (issue 16): ≤ 3 ms added to the p50 time
to first token, ≥ 0.97× the streamed chunks per second; requests/s one Haven routes is informational.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from benchmarks.harness import ROOT, BenchContext, Result, free_port

WORDS = 200  # the fake echoes the prompt word by word: one chunk per word
CHUNK_DELAY = 0.002


@contextmanager
def _process(args: list[str], health: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(health, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{args[:3]} did not start")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=15)


def _content(line: str) -> str:
    choices = json.loads(line[6:]).get("choices") or [{}]
    return str((choices[0].get("delta") or {}).get("content") or "")


async def _stream_once(client: httpx.AsyncClient, url: str, model: str) -> tuple[float, float, int]:
    """(seconds to the first content chunk, seconds for the whole stream, chunks)."""
    body = {"model": model, "stream": True, "max_tokens": WORDS + 10,
            "messages": [{"role": "user", "content": " ".join(["word"] * WORDS)}]}
    started = time.perf_counter()
    first = None
    chunks = 0
    async with client.stream("POST", url + "/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            # The first chunk with answer text on both paths: Haven's opening role chunk carries an empty
            # "content", and the upstream's first chunk is reasoning; matching on the key alone compared
            # Haven's first chunk with the upstream's second (one chunk delay in Haven's favour).
            if line.startswith("data: {") and _content(line):
                chunks += 1
                if first is None:
                    first = time.perf_counter() - started
    return (first or 0.0), time.perf_counter() - started, chunks


async def _requests_per_second(url: str, seconds: float, concurrency: int = 16) -> float:
    body = {"model": "model-sleep", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    done = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                (await client.post(url + "/chat/completions", json=body)).raise_for_status()
                done += 1
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started)


def run(ctx: BenchContext) -> list[Result]:
    rounds, per_round = (3, 10) if ctx.quick else (7, 30)
    # Two fakes paced like a fast real model (500 tokens/s per stream; an unpaced fake streams 8,000+ chunks/s,
    # a rate no real upstream reaches, where per-chunk re-encoding would be all that is measured). "sleep"
    # sleeps 2 ms after each chunk, so each late wakeup of its process on these 2 shared cores slows its stream;
    # "clock" sends chunk i at start + i × 2 ms, as an engine on its own hardware keeps its token clock.
    fakes = {"sleep": (free_port(), []), "clock": (free_port(), ["--clock"])}
    direct = {pace: f"http://127.0.0.1:{port}/v1" for pace, (port, _) in fakes.items()}
    with tempfile.TemporaryDirectory() as home, contextlib.ExitStack() as stack:
        for pace, (port, flags) in fakes.items():
            fake = [sys.executable, "-m", "tests.support.fake_vllm", "--port", str(port), "--name", "up",
                    "--models", f"model-{pace}", "--chunk-delay", str(CHUNK_DELAY), *flags]
            stack.enter_context(_process(fake, direct[pace].removesuffix("/v1") + "/health"))
        Path(home, "upstreams.yaml").write_text(yaml.safe_dump({"upstreams": [
            {"name": pace, "url": direct[pace], "kind": "vllm", "models": [f"model-{pace}"]} for pace in fakes]}))
        haven_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
        # No per-client rate limits: one benchmark client drives every request (as bench_load does).
        env.update({"HAVEN_HOME": home, "HAVEN_PORT": str(haven_port), "HAVEN_REDACT": "off",
                    "HAVEN_RATE_LIMIT_REQUESTS_PER_MINUTE": "0", "HAVEN_MAX_GENERATIONS_PER_CLIENT": "0",
                    "HAVEN_LOG_LEVEL": "warning"})
        haven_url = f"http://127.0.0.1:{haven_port}/v1"
        serve = [sys.executable, "-c", "from haven.cli.main import main; main(['serve'])"]
        with _process(serve, haven_url.removesuffix("/v1") + "/health", env):
            samples: dict[tuple[str, str], list[tuple[float, float, int]]] = {
                (pace, path): [] for pace in fakes for path in ("direct", "haven")}

            async def measure() -> None:
                async with httpx.AsyncClient(timeout=30) as client:
                    for pace in fakes:
                        for _ in range(2):  # warm both paths (connections, first-request imports)
                            await _stream_once(client, direct[pace], f"model-{pace}")
                            await _stream_once(client, haven_url, f"model-{pace}")
                    for _ in range(rounds):
                        for pace in fakes:
                            for path, url in (("direct", direct[pace]), ("haven", haven_url)):
                                for _ in range(per_round):
                                    samples[pace, path].append(await _stream_once(client, url, f"model-{pace}"))

            asyncio.run(measure())
            seconds = 3.0 if ctx.quick else 10.0
            routed = asyncio.run(_requests_per_second(haven_url, seconds))
            plain = asyncio.run(_requests_per_second(direct["sleep"], seconds))

    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) >= 2 else values[0] * 1000

    # Time to first token from the same fake as before the clock-paced one existed (the two read alike).
    ttft = {path: [s[0] for s in samples["sleep", path]] for path in ("direct", "haven")}
    rate = {key: statistics.median(s[2] / s[1] for s in rows) for key, rows in samples.items()}
    added_p50 = p(ttft["haven"], 50) - p(ttft["direct"], 50)
    added_p99 = p(ttft["haven"], 99) - p(ttft["direct"], 99)
    n = len(ttft["haven"])
    paced = f"{WORDS}-chunk answers paced at {1 / CHUNK_DELAY:.0f} chunks/s, median over streams"
    return [
        Result("time to first token added by Haven, p50", added_p50, None, "", "ms", higher_is_better=False,
               limit=3.0, notes=f"direct {p(ttft['direct'], 50):.2f} ms, through Haven {p(ttft['haven'], 50):.2f} ms; "
               f"{n} streams each, {rounds} alternating rounds"),
        Result("time to first token added by Haven, p99", added_p99, None, "", "ms", higher_is_better=False,
               notes=f"direct {p(ttft['direct'], 99):.2f} ms, through Haven {p(ttft['haven'], 99):.2f} ms"),
        Result("streamed chunks/s through Haven, upstream on its own clock", rate["clock", "haven"],
               rate["clock", "direct"], "direct to the upstream", "chunks/s", target_ratio=0.97,
               notes=paced + "; chunk i sent at start + i × 2 ms"),
        Result("streamed chunks/s through Haven, upstream sleeping after each chunk", rate["sleep", "haven"],
               rate["sleep", "direct"], "direct to the upstream", "chunks/s",
               notes=paced + "; informational: each late wakeup of the fake on these shared 2 cores slows it"),
        Result("chat requests/s one Haven routes (16 clients)", routed, plain, "the fake upstream alone", "req/s",
               notes="informational: the fast fake upstream is the ceiling"),
    ]
