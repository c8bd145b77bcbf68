"""Accounts overhead: a chat turn recorded into an encrypted conversation, listing 1,000 conversations, login.

* *conversation_id overhead*: p50 of ``POST /v1/chat/completions`` with ``conversation_id`` minus p50 of
  the same request without it, in-process (httpx ASGI transport) over a scripted engine, so the
  difference is Haven's recording alone (two committed transactions, AES-GCM, the log line).
  Issue 10's target: ≤ 2 ms.
* *list 1,000 conversations*: p50 of reading all 1,000 of a user's conversations through
  ``GET /api/v1/conversations`` (5 pages of 200, titles decrypted). Target: ≤ 50 ms.
* *depth*: page 50 (rows 9,801-10,000) of 10,001 conversations against the first (keyset pagination:
  flat). Informational.
* *login*: p50 of ``POST /api/v1/auth/login`` with the default Argon2id parameters (t=3, 64 MiB, p=4):
  one verification plus one key derivation. Informational (it is meant to be slow for attackers).

Run alone with ``python -m benchmarks.bench_accounts [--quick]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import BenchContext, Result

PASSWORD = "correct mule staple 42"


async def _measure(quick: bool) -> dict[str, float]:
    import httpx

    from haven.server.app import create_app
    from haven.settings import Settings
    from tests.support.fake_engine import FakeLoader, FakeStore

    turns = 40 if quick else 300
    list_rounds = 5 if quick else 30
    logins = 3 if quick else 10
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        app = create_app(
            # Default Argon2id parameters; no per-client limits (one benchmark client sends thousands of requests).
            Settings(home=home, default_model="tiny:latest", rate_limit_requests_per_minute=0,
                     rate_limit_tokens_per_minute=0, max_generations_per_client=0),  # fmt: skip
            engine_loader=FakeLoader(),
            store=FakeStore(Path(tmp) / "store", names=("tiny:latest",)),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as client:
            r = await client.post("/api/v1/auth/setup", json={"name": "alice", "password": PASSWORD})
            r.raise_for_status()
            client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
            cid = (await client.post("/api/v1/conversations", json={"title": "bench"})).json()["id"]
            chat: dict[str, Any] = {"model": "tiny", "messages": [{"role": "user", "content": "hello there"}]}

            async def timed(body: dict[str, Any]) -> float:
                t0 = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=body)
                elapsed = time.perf_counter() - t0
                response.raise_for_status()
                return elapsed

            for _ in range(5):  # warm-up: model load, first queries
                await timed(chat)
                await timed({**chat, "conversation_id": cid})
            plain, recorded = [], []
            for _ in range(turns):  # interleaved, so drift hits both alike
                plain.append(await timed(chat))
                recorded.append(await timed({**chat, "conversation_id": cid}))

            accounts = app.state.accounts
            owner = accounts.accounts.authenticate_password("alice", PASSWORD)
            for i in range(1000):
                accounts.conversations.create(owner, title=f"conversation {i}")
            listings = []
            for _ in range(list_rounds):
                t0 = time.perf_counter()
                cursor, seen = None, 0
                while True:
                    params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
                    page = (await client.get("/api/v1/conversations", params=params)).json()
                    seen += len(page["data"])
                    cursor = page["next_cursor"]
                    if not cursor:
                        break
                listings.append(time.perf_counter() - t0)
                assert seen == 1001, seen

            # Depth: grow to 10,001 conversations and time the first and the 50th page of 200 (rows 9,801-10,000;
            # keyset cursor: it should cost what the first does, where an OFFSET would read the 9,800 rows before it).
            for i in range(1000, 10_000):
                accounts.conversations.create(owner, title=f"conversation {i}")
            cursors: list[str | None] = [None]
            while True:
                page = (
                    await client.get("/api/v1/conversations", params={"limit": 200, "cursor": cursors[-1] or ""})
                ).json()
                if not page["next_cursor"]:
                    break
                cursors.append(page["next_cursor"])
            assert len(cursors) == 51, len(cursors)
            first_page, last_page = [], []
            for _ in range(list_rounds):
                for where, times in ((cursors[0], first_page), (cursors[-2], last_page)):  # [-1]: a 1-row page
                    t0 = time.perf_counter()
                    (await client.get("/api/v1/conversations", params={"limit": 200, "cursor": where or ""})).json()
                    times.append(time.perf_counter() - t0)

            login_times = []
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as fresh:
                for _ in range(logins):
                    t0 = time.perf_counter()
                    r = await fresh.post("/api/v1/auth/login", json={"name": "alice", "password": PASSWORD})
                    login_times.append(time.perf_counter() - t0)
                    r.raise_for_status()
                    fresh.cookies.clear()
        await app.state.model_manager.close()
        app.state.accounts.close()
    return {
        "plain_ms": statistics.median(plain) * 1000,
        "recorded_ms": statistics.median(recorded) * 1000,
        "list_ms": statistics.median(listings) * 1000,
        "login_ms": statistics.median(login_times) * 1000,
        "first_page_ms": statistics.median(first_page) * 1000,
        "last_page_ms": statistics.median(last_page) * 1000,
    }


def run(ctx: BenchContext) -> list[Result]:
    m = asyncio.run(_measure(ctx.quick))
    overhead = m["recorded_ms"] - m["plain_ms"]
    return [
        Result(
            "chat turn overhead with conversation_id (p50)",
            round(overhead, 2),
            None,
            "",
            "ms",
            higher_is_better=False,
            limit=2.0,
            notes=f"{m['recorded_ms']:.2f} ms vs {m['plain_ms']:.2f} ms, in-process, scripted engine",
        ),
        Result(
            "list 1,000 conversations (p50, 5 pages of 200)",
            round(m["list_ms"], 1),
            None,
            "",
            "ms",
            higher_is_better=False,
            limit=50.0,
            notes="titles decrypted (AES-256-GCM)",
        ),
        Result(
            "page 50 of 10,000 conversations vs the first (p50, 200 per page)",
            round(m["last_page_ms"], 1),
            None,
            "",
            "ms",
            higher_is_better=False,
            notes=f"first page {m['first_page_ms']:.1f} ms; keyset cursor, flat at any depth",
        ),
        Result(
            "login (Argon2id t=3, 64 MiB, p=4; verify + key derivation)",
            round(m["login_ms"], 1),
            None,
            "",
            "ms",
            higher_is_better=False,
            notes="informational: the cost an attacker pays per guess, twice",
        ),
    ]


if __name__ == "__main__":
    from benchmarks.run import main as run_main

    sys.exit(run_main(["--only", "accounts", "--no-write", *sys.argv[1:]]) or 0)
