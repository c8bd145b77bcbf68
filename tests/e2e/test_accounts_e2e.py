"""Accounts against a real ``haven serve``: SIGKILL mid-stream, canary search of HAVEN_HOME and of a pg_dump,
and ``haven users rotate-key`` killed half-way then rerun."""

from __future__ import annotations

import glob
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.conftest_postgres import postgres_url  # noqa: F401 - the fixture, used by name
from tests.e2e.conftest import HAVEN, server_env, start_haven_server
from tests.support.accounts import PASSWORD

pytestmark = pytest.mark.e2e
FAST = {
    "password_time_cost": 1,
    "password_memory_kib": 1024,
    "password_parallelism": 1,
    "login_failure_delay_seconds": 0,
    "context_length": 4096,
    "parallel": 1,
}
CANARY = "canary-e2e-5c0ffee-9b1d"


def setup_alice(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    r = client.post("/api/v1/auth/setup", json={"name": "alice", "password": PASSWORD})
    assert r.status_code == 201, r.text
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


def all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink())


def test_sigkill_while_streaming_then_restart(make_test_model: Callable[..., Path], tmp_path: Path) -> None:
    home = tmp_path / "home"
    with start_haven_server(home, {"tiny": make_test_model()}, default_model="tiny", **FAST) as url:
        alice = setup_alice(url)
        cid = alice.post("/api/v1/conversations", json={"title": f"title {CANARY}"}).json()["id"]
        body = {
            "model": "tiny",
            "stream": True,
            "max_tokens": 3000,
            "ignore_eos": True,
            "conversation_id": cid,
            "messages": [{"role": "user", "content": f"tell me about {CANARY}"}],
        }
        received = 0
        with alice.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if '"content"' in line and '"content":""' not in line.replace(" ", ""):
                    received += 1
                if received >= 5:
                    url.process.send_signal(signal.SIGKILL)
                    break
        url.process.wait(timeout=10)
        assert url.process.returncode == -signal.SIGKILL
        with sqlite3.connect(home / "haven.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        alice.close()
    with start_haven_server(home, {}, default_model="tiny", **FAST) as url:
        alice = httpx.Client(base_url=url, timeout=60)
        r = alice.post("/api/v1/auth/login", json={"name": "alice", "password": PASSWORD})
        assert r.status_code == 200
        conv = alice.get(f"/api/v1/conversations/{cid}").json()
        user_turn, reply = conv["messages"]
        assert user_turn["content"] == f"tell me about {CANARY}" and not user_turn["incomplete"]
        assert reply["incomplete"] is True and reply["role"] == "assistant" and reply["content"]
        # the canary: nowhere in a byte-for-byte copy of HAVEN_HOME (database, WAL, key files, logs)
        copy = tmp_path / "copy"
        shutil.copytree(home, copy)
        data = all_bytes(copy)
        assert b"haven.db" in b"".join(p.name.encode() for p in copy.iterdir())
        assert CANARY.encode() not in data and CANARY.encode("utf-16-le") not in data
        alice.close()


@pytest.mark.postgres
def test_canary_absent_from_a_postgres_dump(
    make_test_model: Callable[..., Path], tmp_path: Path, postgres_url: str  # noqa: F811
) -> None:
    from sqlalchemy import text

    from haven.storage.db import make_engine

    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    home = tmp_path / "home"
    with start_haven_server(
        home, {"tiny": make_test_model()}, default_model="tiny", database_url=postgres_url, **FAST
    ) as url:
        alice = setup_alice(url)
        cid = alice.post("/api/v1/conversations", json={"title": f"t {CANARY}"}).json()["id"]
        r = alice.post(
            "/v1/chat/completions",
            json={
                "model": "tiny",
                "max_tokens": 8,
                "conversation_id": cid,
                "messages": [{"role": "user", "content": CANARY}],
            },
        )
        assert r.status_code == 200
        alice.close()
    socket_dir = parse_qs(urlparse(postgres_url).query)["host"][0]
    pg_dump = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))[-1]
    dump = subprocess.run([pg_dump, "-h", socket_dir, "-U", "haven", "postgres"], capture_output=True, check=True)
    assert b"messages" in dump.stdout and b"conversations" in dump.stdout
    assert CANARY.encode() not in dump.stdout
    assert CANARY.encode() not in all_bytes(home)


def test_rotate_key_killed_then_rerun(tmp_path: Path) -> None:
    from haven.accounts.service import Accounts
    from haven.conversations.store import ConversationStore
    from haven.storage.db import open_database
    from tests.support.accounts import FAST as FAST_PARAMS

    home = tmp_path / "home"
    env = server_env(home, {k: v for k, v in FAST.items() if k.startswith(("password", "login"))})
    db = open_database(f"sqlite:///{home / 'haven.db'}")
    accounts = Accounts(db, home=home, params=FAST_PARAMS)
    accounts.create_user("alice", PASSWORD)
    alice = accounts.authenticate_password("alice", PASSWORD)
    store = ConversationStore(db)
    for i in range(40):
        cid = store.create(alice, title=f"c{i}").id
        store.append(alice, cid, [{"role": "user", "content": f"q{i}-{j}"} for j in range(50)])
    rotate = [*HAVEN, "users", "rotate-key", "alice", "--password-stdin", "--batch-size", "10"]
    process = subprocess.Popen(rotate, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdin is not None
    process.stdin.write((PASSWORD + "\n").encode())
    process.stdin.close()
    deadline = time.monotonic() + 60
    with sqlite3.connect(home / "haven.db") as probe:
        while time.monotonic() < deadline:
            moved = probe.execute("SELECT count(*) FROM messages WHERE key_version = 2").fetchone()[0]
            if moved > 0:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    with sqlite3.connect(home / "haven.db") as probe:
        versions = dict(probe.execute("SELECT key_version, count(*) FROM messages GROUP BY key_version").fetchall())
    assert versions.get(1) and versions.get(2), versions  # killed half-way: rows under both keys
    rerun = subprocess.run(rotate, env=env, input=(PASSWORD + "\n").encode(), capture_output=True)
    assert rerun.returncode == 0, rerun.stderr.decode()
    alice = accounts.authenticate_password("alice", PASSWORD)
    assert alice.user.key_version == 2
    page, _ = store.page(alice, limit=100)
    assert len(page) == 40
    assert all(len(store.get(alice, c.id).messages or []) == 50 for c in page)
    db.close()
