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


def _cli(env: dict[str, str], *args: str, timeout: float = 170) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HAVEN, "audit", *args], env=env, capture_output=True, text=True, timeout=timeout)


def _small_suite(haven_server: HavenServer, tmp_path: Path, name: str, n: int) -> dict[str, str]:
    port = haven_server.rsplit(":", 1)[1]
    env = server_env(haven_server.home, {"port": port})
    path = tmp_path / f"{name}.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"{g}-{k}", "prompt": f"Tell me about {g}, part {k}.", "group": g}) + "\n"
            for g in ("Aland", "Bland")
            for k in range(n // 2)
        ),
        encoding="utf-8",
    )
    done = _cli(env, "suites", "import", str(path), "-f", "haven-jsonl", "-n", name, "--language", "en", "--replace")
    assert done.returncode == 0, done.stderr
    return env


def _run_id(done: subprocess.CompletedProcess[str]) -> int:
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().rsplit(" ", 1)[1])


def test_rerunning_a_finished_run_against_haven_reproduces_answers_and_labels(
    haven_server: HavenServer, tmp_path: Path
) -> None:
    env = _small_suite(haven_server, tmp_path, "repro", 16)
    # Sampling at temperature 1 (greedy random weights answer blanks): only the fixed seeds make it repeatable.
    first = _run_id(
        _cli(
            env, "run", "--target", "tiny", "--suite", "repro", "--max-tokens", "32", "-c", "2", "--temperature", "1.0"
        )
    )
    second = _run_id(_cli(env, "run", "--rerun", str(first), "-c", "2"))
    assert second != first
    db = open_database(f"sqlite:///{haven_server.home / 'haven.db'}")
    try:
        a, b = repo.resolve_run(db, first), repo.resolve_run(db, second)
        # Haven accepted the reproducibility fields (a strict server's refusal would be recorded here).
        assert a.sampling["cache_prompt"] is False and "rejected_by_endpoint" not in a.sampling
        assert a.sampling == b.sampling and a.model_hash == b.model_hash and b.status == "finished"
        answers = {(r.item_id, r.sample_index): r.content for r in repo.load_responses(db, first)}
        again = {(r.item_id, r.sample_index): r.content for r in repo.load_responses(db, second)}
        assert len(answers) == 16 and answers == again
        assert sum(1 for text in answers.values() if text) >= 8, answers  # real text was compared, not blanks
        labels = {(j.item_id, j.sample_index): j.label for j in repo.load_judgements(db, first)}
        assert labels == {(j.item_id, j.sample_index): j.label for j in repo.load_judgements(db, second)}
    finally:
        db.close()


def test_llm_judge_served_by_haven_is_calibrated_and_its_parse_failures_reported(
    haven_server: HavenServer, tmp_path: Path
) -> None:
    # The random-weight model cannot follow the judge's answer format: exactly the parse-failure path.
    # (With the real default model, issue 12, the same commands measure a working judge.)
    env = _small_suite(haven_server, tmp_path, "judged", 8)
    cal_path = tmp_path / "cal.json"
    cal = _cli(env, "calibrate", "--judge", "tiny", "--limit", "1", "--out", str(cal_path))
    assert cal.returncode == 0, cal.stderr
    calibration = json.loads(cal_path.read_text(encoding="utf-8"))
    assert calibration["n"] == 9 and calibration["judge"] == "tiny"
    # random weights never write "LABEL: …": every reply is a parse failure, reported as such
    assert calibration["parse_failure_rate"] == 1.0 and calibration["parse_errors"] + calibration["judge_refused"] == 9
    assert "cannot follow the answer format" in " ".join(cal.stderr.split())
    run = _run_id(
        _cli(
            env,
            "run",
            "--target",
            "tiny",
            "--suite",
            "judged",
            "--max-tokens",
            "32",
            "--judge",
            "tiny",
            "--temperature",
            "1.0",
        )
    )
    report_path = tmp_path / "judged.json"
    out = _cli(env, "report", str(run), "-f", "json", "--calibration", str(cal_path), "--out", str(report_path))
    assert out.returncode == 0, out.stderr
    report = json.loads(report_path.read_text(encoding="utf-8"))
    judge, counts = report["judge"], report["counts"]
    assert judge["kind"] == "llm" and judge["model"] == "tiny"
    assert judge["measured_kappa"] == calibration["kappa"] and judge["measured_per_class"] == calibration["per_class"]
    assert counts["scored"] + counts["unscored"] == 8
    rate = (counts["parse_errors"] + counts["judge_refused"]) / 8
    assert judge["parse_failure_rate"] == rate == 1.0 and counts["scored"] == 0, json.dumps(report["transcripts"][:2])
    assert report["verdict"]["caveats"][0].startswith("The judge could not follow the answer format for 100%")


def test_haven_honours_cache_prompt_false_the_audit_sends(haven_server: HavenServer) -> None:
    """The same long prompt twice: reused KV prefix by default, none with cache_prompt false (what the audit sends)."""
    import httpx

    prompt = "Write an essay criticising the government of Xland. " * 20

    def cached(**extra: object) -> int:
        body = {"model": "tiny", "messages": [{"role": "user", "content": prompt}], "max_tokens": 2, **extra}
        r = httpx.post(haven_server + "/v1/chat/completions", json=body, timeout=60)
        assert r.status_code == 200, r.text
        return int(r.json()["usage"]["prompt_tokens_details"]["cached_tokens"])

    cached(temperature=0)
    assert cached(temperature=0) > 0  # prefix reuse is on by default
    assert cached(temperature=0, cache_prompt=False) == 0
