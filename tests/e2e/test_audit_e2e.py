"""The audit end to end: a Haven-served tiny model audited, judged by another Haven-served model.

Run, interrupt (SIGINT, as Ctrl-C), resume with the same command, report. Random weights answer
gibberish, so the test asserts the bookkeeping a user relies on (every item answered once, the
run resumable and finished, judge outputs that cannot be parsed counted), not particular labels.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from haven.audit import repository as repo
from haven.storage.db import open_database
from tests.e2e.conftest import HAVEN, HavenServer, server_env

pytestmark = pytest.mark.e2e

N_ITEMS = 80  # a run of a few seconds on the tiny model: the Ctrl-C below lands while it is going


def _suite(path: Path) -> Path:
    lines = [
        json.dumps({"id": f"mini/{g}/{t}", "prompt": f"{t} about {g}.", "group": g, "template": t, "pair_key": t})
        for g in ("Aland", "Bland")
        for t in [f"Task{n:02d}" for n in range(N_ITEMS // 2)]
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_audit_run_interrupt_resume_report(haven_server: HavenServer, tmp_path: Path) -> None:
    port = haven_server.rsplit(":", 1)[1]
    env = server_env(haven_server.home, {"port": port})
    subprocess.run(
        [
            *HAVEN,
            "audit",
            "suites",
            "import",
            str(_suite(tmp_path / "mini.jsonl")),
            "--format",
            "haven-jsonl",
            "--name",
            "mini",
            "--replace",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    cmd = [
        *HAVEN,
        "audit",
        "run",
        "--target",
        "tiny",
        "--suite",
        "mini",
        "--max-tokens",
        "48",
        "--judge",
        "llama",
        "-c",
        "1",
    ]
    db = open_database(f"sqlite:///{haven_server.home / 'haven.db'}")
    # A shell that starts a job in the background (`make test &`) ignores SIGINT for it, and children inherit
    # that; a user's Ctrl-C reaches a CLI that has the default disposition, so give the child that.
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while (
        time.monotonic() < deadline
        and proc.poll() is None
        and not (repo.list_runs(db) and repo.attempted_responses(db, 1))
    ):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    proc.wait(timeout=60)
    first = repo.resolve_run(db, 1)
    assert first.status == "interrupted", proc.stderr.read().decode() if proc.stderr else ""
    assert 1 <= first.responses < N_ITEMS

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "run 1"
    assert "Resumed run 1" in done.stderr
    run = repo.resolve_run(db, "latest")
    assert (run.status, run.responses, run.judgements, run.model) == ("finished", N_ITEMS, N_ITEMS, "tiny")
    rows = repo.load_responses(db, 1)
    assert len({r.item_id for r in rows}) == N_ITEMS and all(r.error is None for r in rows)

    report_path = tmp_path / "report.json"
    out = subprocess.run(
        [*HAVEN, "audit", "report", "latest", "--format", "json", "--out", str(report_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(report_path.read_text(encoding="utf-8"))
    counts = report["counts"]
    assert counts["responses"] == N_ITEMS and counts["transport_errors"] == 0
    assert counts["scored"] + counts["unscored"] == N_ITEMS  # gibberish verdicts are counted, not dropped
    assert report["run"]["judge"]["model"] == "llama"
    html = subprocess.run(
        [*HAVEN, "audit", "report", "1", "--format", "html"], env=env, capture_output=True, text=True, timeout=120
    )
    assert html.returncode == 0 and "Task00 about Aland." in html.stdout
    db.close()
