"""Audit runner throughput: items per second end to end against a target that answers instantly.

The target is the tests' scripted OpenAI-compatible server (``tests/support/fake_openai.py``) in
a process of its own, so its threads do not share the runner's GIL. Everything Haven does per item
is measured: HTTP round trip, heuristic scoring, storing the response and judgement in SQLite.
Acceptance (issue 5): ≥ 50 items/s, i.e. the audited model, not Haven, is the bottleneck.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import ROOT, BenchContext, Result


def measure(languages: tuple[str, ...], concurrency: int) -> tuple[int, float]:
    """(items, seconds) for one fresh run of paired-countries."""
    from haven.audit.runner import RunRequest, run_audit
    from haven.storage.db import open_database

    server = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_openai"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as tmp:
            db = open_database(f"sqlite:///{Path(tmp) / 'haven.db'}")
            req = RunRequest(suite="paired-countries", endpoint=url, languages=languages, concurrency=concurrency)
            t0 = time.perf_counter()
            result = asyncio.run(run_audit(db, req))
            elapsed = time.perf_counter() - t0
            db.close()
        return result.run.responses, elapsed
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=10)


def run(ctx: BenchContext) -> list[Result]:
    languages = ("en",) if ctx.quick else ("en", "zh-Hans", "zh-Hant")
    items, seconds = measure(languages, concurrency=16)
    return [
        Result(
            name="audit runner, instant target",
            haven=items / seconds,
            peer=None,
            peer_name="",
            unit="items/s",
            limit=50.0,
            notes=f"{items} items of paired-countries in {seconds:.1f} s, concurrency 16, heuristic judge, SQLite",
        )
    ]


if __name__ == "__main__":
    n, s = measure(("en", "zh-Hans", "zh-Hant"), 16)
    print(f"{n} items in {s:.2f} s = {n / s:.1f} items/s")
