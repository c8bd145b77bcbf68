"""Load and resilience benchmark for ``haven serve`` (issue 11): sustained streams, a disconnect storm, SIGKILL.

Phases, against a real ``haven serve`` on a free loopback port with a factory model:

1. **sustained**: ``--streams`` concurrent clients (default 64) each loop streaming chat completions for
   ``--duration`` seconds (default 120); counts streams and errors, samples the server's RSS; reports RSS
   growth between the first sample after warm-up and the last (target ≤ 5 %), and ``/health``'s p99 latency
   meanwhile (target ≤ 100 ms).
2. **disconnect storm**: 50 clients open streams and all drop their connections at once; reports how long
   until ``haven_slots_in_use`` and ``haven_queue_depth`` in ``/metrics`` are back to 0 (target ≤ 1 s).
3. **SIGKILL and restart**: the server is killed with SIGKILL mid-load and started again on the same home;
   reports the time until ``/health`` answers and whether the model still serves and ``haven models
   verify`` passes (the store survives an unclean stop).

``--smoke`` runs each phase briefly (8 streams, 10 s) for CI-sized checks. Figures are printed as JSON;
``python -m benchmarks.run`` writes them to RESULTS.md through :func:`run`.

    .venv/bin/python -m benchmarks.bench_load [--smoke] [--streams 64] [--duration 120] [--model PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HAVEN = [sys.executable, "-c", "from haven.cli.main import main; main()"]
CHAT = {"model": "bench", "messages": [{"role": "user", "content": "Tell me a story."}], "stream": True,
        "max_tokens": 32}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(home: Path, port: int, parallel: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    env.update(HAVEN_HOME=str(home), HAVEN_PORT=str(port), HAVEN_PARALLEL=str(parallel), HAVEN_MAX_QUEUE="256",
               HAVEN_DEFAULT_MODEL="bench", HAVEN_CONTEXT_LENGTH="32768", HAVEN_RATE_LIMIT_REQUESTS_PER_MINUTE="0",
               HAVEN_MAX_GENERATIONS_PER_CLIENT="0", HAVEN_THREADS=str(max(1, (os.cpu_count() or 2) // 2)))  # fmt: skip
    return env


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen([*HAVEN, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{env['HAVEN_PORT']}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"haven serve exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("haven serve did not start")


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def _stream_once(client: httpx.AsyncClient) -> bool:
    async with client.stream("POST", "/v1/chat/completions", json=CHAT) as response:
        if response.status_code != 200:
            return False
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                return True
    return False


async def sustained(url: str, pid: int, streams: int, duration: float) -> dict[str, Any]:
    done = errors = 0
    samples: list[int] = []
    stop = time.monotonic() + duration

    async def worker() -> None:
        nonlocal done, errors
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while time.monotonic() < stop:
                try:
                    ok = await _stream_once(client)
                except httpx.HTTPError:
                    ok = False
                done += ok
                errors += not ok

    async def sampler() -> None:
        await asyncio.sleep(min(10.0, duration / 5))  # warm-up: model loaded, caches allocated
        while time.monotonic() < stop:
            samples.append(_rss(pid))
            await asyncio.sleep(1.0)

    health: list[float] = []

    async def health_poller() -> None:
        # /health is what a load balancer polls: it must answer fast however busy the slots are (issue 11: 100 ms).
        await asyncio.sleep(min(10.0, duration / 5))  # after the warm-up, as the RSS samples: steady load
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                (await client.get("/health")).raise_for_status()
                health.append(time.perf_counter() - t0)
                await asyncio.sleep(0.25)

    await asyncio.gather(sampler(), health_poller(), *(worker() for _ in range(streams)))
    growth = (samples[-1] - samples[0]) / samples[0] if len(samples) >= 2 else 0.0
    health.sort()
    p99 = health[min(len(health) - 1, int(0.99 * len(health)))] if health else None
    return {"streams": streams, "seconds": duration, "completed": done, "errors": errors,
            "rss_start_mb": samples[0] >> 20 if samples else None, "rss_end_mb": samples[-1] >> 20 if samples else None,
            "rss_growth_pct": round(100 * growth, 2),
            "health_p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
            "health_max_ms": round(health[-1] * 1000, 1) if health else None}  # fmt: skip


async def _busy(client: httpx.AsyncClient) -> int:
    text = (await client.get("/metrics")).text
    total = 0
    for line in text.splitlines():
        if line.startswith(("haven_slots_in_use{", "haven_queue_depth{")):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def disconnect_storm(url: str, clients: int = 50) -> dict[str, Any]:
    started = asyncio.Event()
    opened = 0

    async def victim() -> None:
        nonlocal opened
        client = httpx.AsyncClient(base_url=url, timeout=60)
        # Long enough to be mid-generation at the storm, and under the server's per-request max_tokens limit.
        body = {**CHAT, "max_tokens": 4_000, "ignore_eos": True}
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            # Held, not left with `break`: a dropped line iterator is finalized, which closes the connection at
            # once — every victim would have left before the storm.
            lines = response.aiter_lines()
            await lines.__anext__()
            opened += 1
            await started.wait()
        await client.aclose()  # the connection drops mid-stream

    tasks = [asyncio.create_task(victim()) for _ in range(clients)]
    async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
        deadline = time.monotonic() + 60
        while opened < clients and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        busy_before = await _busy(probe)
        started.set()
        t0 = time.perf_counter()
        await asyncio.gather(*tasks, return_exceptions=True)
        while await _busy(probe) and time.perf_counter() - t0 < 30:
            await asyncio.sleep(0.02)
        freed = time.perf_counter() - t0
    return {"clients": clients, "streams_open": opened, "busy_before": busy_before,
            "seconds_until_all_slots_free": round(freed, 3)}  # fmt: skip


def sigkill_restart(env: dict[str, str], proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    url = f"http://127.0.0.1:{env['HAVEN_PORT']}"

    async def load_then_kill() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            tasks = [asyncio.create_task(_stream_once(client)) for _ in range(8)]
            await asyncio.sleep(1.0)
            os.kill(proc.pid, signal.SIGKILL)
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(load_then_kill())
    proc.wait()
    t0 = time.perf_counter()
    new = _start(env, log)
    back = time.perf_counter() - t0
    ok = asyncio.run(_serves(url))
    verify = subprocess.run([*HAVEN, "models", "verify", "bench"], env=env, capture_output=True, text=True)
    new.send_signal(signal.SIGTERM)
    new.wait(timeout=30)
    return {"exit_signal": -proc.returncode, "seconds_until_health": round(back, 2), "serves_after": ok,
            "store_verified": verify.returncode == 0}  # fmt: skip


async def _serves(url: str) -> bool:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await _stream_once(client)


def measure(streams: int, duration: float, parallel: int, model: Path | None, storm_clients: int) -> dict[str, Any]:
    """The three phases against one fresh ``haven serve`` (a temporary home); their figures by phase."""
    with tempfile.TemporaryDirectory(prefix="haven-bench-load-") as tmp:
        home, log = Path(tmp) / "home", Path(tmp) / "serve.log"
        if model is None:
            from haven.models.factory import make_model

            model = make_model(Path(tmp) / "tiny.gguf", arch="qwen2", size="tiny", quant="f32", template="qwen2.5")
        env = _env(home, _free_port(), parallel)
        subprocess.run([*HAVEN, "models", "import", str(model), "--name", "bench"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        proc = _start(env, log)
        url = f"http://127.0.0.1:{env['HAVEN_PORT']}"
        results: dict[str, Any] = {"sustained": asyncio.run(sustained(url, proc.pid, streams, duration))}
        results["disconnect_storm"] = asyncio.run(disconnect_storm(url, storm_clients))
        results["sigkill_restart"] = sigkill_restart(env, proc, log)
    return results


def run(ctx: Any) -> list[Any]:
    """The RESULTS.md rows (``python -m benchmarks.run``): 64 streams for 2 minutes (quick: 16 for 30 s)."""
    from benchmarks.harness import Result

    streams, duration = (16, 30.0) if ctx.quick else (64, 120.0)
    ctx.log(f"bench_load: {streams} streams for {duration:.0f} s, then a 50-client disconnect storm, then SIGKILL")
    r = measure(streams, duration, 4, None, 50)
    s, storm, kill = r["sustained"], r["disconnect_storm"], r["sigkill_restart"]
    what = f"{streams} concurrent streams for {duration:.0f} s"
    return [
        Result(f"{what}: failed streams", s["errors"], None, "", "streams", higher_is_better=False, limit=0,
               notes=f"{s['completed']:,} streams completed; tiny factory model, 4 slots"),
        Result(f"{what}: /health p99", s["health_p99_ms"], None, "", "ms", higher_is_better=False, limit=100.0,
               notes=f"polled every 0.25 s on its own connection after the warm-up; max {s['health_max_ms']} ms"),
        Result(f"{what}: RSS growth", s["rss_growth_pct"], None, "", "%", higher_is_better=False, limit=5.0,
               notes=f"RSS {s['rss_start_mb']} → {s['rss_end_mb']} MB after warm-up"),
        Result("all slots free after a 50-client disconnect storm", storm["seconds_until_all_slots_free"], None, "",
               "s", higher_is_better=False, limit=1.0,
               notes=f"{storm['streams_open']} streams open, {storm['busy_before']} slots+queue busy at the storm"),
        Result("SIGKILL mid-load, restart: serves and the store verifies", float(kill["serves_after"]
               and kill["store_verified"]), None, "", "yes=1", limit=1.0,
               notes=f"/health back {kill['seconds_until_health']} s after the restart began"),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smoke", action="store_true", help="brief phases (8 streams, 10 s)")
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--model", type=Path, help="GGUF to serve (default: the factory's tiny qwen2)")
    args = parser.parse_args(argv)
    streams, duration = (8, 10.0) if args.smoke else (args.streams, args.duration)
    results = measure(streams, duration, args.parallel, args.model, 50 if not args.smoke else 20)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
