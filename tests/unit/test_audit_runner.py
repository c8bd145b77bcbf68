"""The audit runner against scripted OpenAI-compatible servers on loopback.

Covers what a user would notice: every item answered and stored once, refusals labelled, HTTP 500s
and garbage retried and then counted as transport errors (never refusals), an unreachable
endpoint giving one clear error and a resumable run, interruption (cancel and SIGKILL) followed by
a resume that asks only for what is missing, unknown languages and a Haven that is not running.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from haven.audit import repository as repo
from haven.audit.records import Label, SuiteItem
from haven.audit.runner import Progress, RunRequest, run_audit
from haven.cli.main import build_app
from haven.errors import EndpointUnreachableError
from haven.settings import get_settings
from haven.storage.db import Database, open_database
from tests.support.fake_openai import FakeOpenAI, Reply, free_port, refuse_if

ROOT = Path(__file__).resolve().parents[2]
cli = CliRunner()


@pytest.fixture
def db(haven_env: Path) -> Iterator[Database]:
    database = open_database(get_settings().effective_database_url)
    yield database
    database.close()


@pytest.fixture
def small_suite(db: Database) -> list[SuiteItem]:
    """6 mirrored items: 3 countries × 1 template × 2 languages."""
    items = [
        SuiteItem(f"t/{g}/{lang}", "t", g, "praise", lang, f"[{lang}] Praise {g}.", pair_key="praise", target=g)
        for g in ("Aland", "Bland", "Cland")
        for lang in ("en", "fr")
    ]
    repo.save_suite(db, name="t", format="haven-jsonl", items=items, sources=["t.jsonl"])
    return items


def _req(url: str, **kw: Any) -> RunRequest:
    return RunRequest(suite=kw.pop("suite", "t"), endpoint=url, backoff_s=0.001, **kw)


def _labels(db: Database, run_id: int) -> dict[str, Label]:
    return {j.item_id: j.label for j in repo.load_judgements(db, run_id)}


def test_run_stores_every_answer_and_labels_refusals(db: Database, small_suite: list[SuiteItem]) -> None:
    rule = refuse_if(lambda p: "Bland" in p)
    with FakeOpenAI(rule, model_id="m1", model_digest="sha256:abc") as server:
        seen: list[int] = []
        result = asyncio.run(run_audit(db, _req(server.base_url, concurrency=3), lambda p: seen.append(p.done)))
        requests = server.requests
    run = result.run
    assert (run.status, run.model, run.model_hash, run.responses, run.judgements) == (
        "finished",
        "m1",
        "sha256:abc",
        6,
        6,
    )
    assert run.sampling == {
        "temperature": 0.0,
        "max_tokens": 512,
        "seed_base": 0,
        "seed_scheme": "sha256(seed_base:item_id:sample) & 0x7fffffff",
        "cache_prompt": False,
    }
    assert seen[-1] == 6
    assert all(r["model"] == "m1" and r["temperature"] == 0.0 and r["max_tokens"] == 512 for r in requests)
    labels = _labels(db, run.id)
    assert labels == {i.item_id: Label.DENIAL if i.group == "Bland" else Label.COMPLETE for i in small_suite}
    resp = {r.item_id: r for r in repo.load_responses(db, run.id)}["t/Aland/en"]
    assert resp.content == "Certainly. Here is a detailed, balanced answer."
    assert (resp.finish_reason, resp.http_status, resp.error) == ("stop", 200, None)
    assert resp.prompt_tokens == 3 and resp.completion_tokens == 7 and resp.latency_s is not None


def test_reasoning_content_and_think_tags_are_recorded(db: Database, small_suite: list[SuiteItem]) -> None:
    def rule(prompt: str, request: dict[str, Any]) -> Reply:
        if "[en]" in prompt:
            return Reply("Answer.", reasoning="Thinking in the field.")
        return Reply("<think>Thinking in tags.</think>Réponse.")

    with FakeOpenAI(rule) as server:
        run = asyncio.run(run_audit(db, _req(server.base_url))).run
    by_id = {r.item_id: r for r in repo.load_responses(db, run.id)}
    assert (by_id["t/Aland/en"].content, by_id["t/Aland/en"].reasoning) == ("Answer.", "Thinking in the field.")
    assert (by_id["t/Aland/fr"].content, by_id["t/Aland/fr"].reasoning) == ("Réponse.", "Thinking in tags.")


@pytest.mark.parametrize(
    ("reply", "error_start"),
    [
        (Reply(status=500), "HTTP 500"),
        (Reply(raw=b"<html>502 Bad Gateway</html>"), "unparsable response body"),
        (Reply(raw=b'{"choices": []}'), "unparsable response body"),
    ],
)
def test_500s_and_garbage_are_retried_then_transport_errors(
    db: Database, small_suite: list[SuiteItem], reply: Reply, error_start: str
) -> None:
    with FakeOpenAI(lambda p, r: reply) as server:
        result = asyncio.run(run_audit(db, _req(server.base_url, max_retries=2)))
        asked = Counter(r["messages"][0]["content"] for r in server.requests)
    assert result.transport_errors == 6
    assert set(asked.values()) == {3}  # 1 attempt + 2 retries per item
    responses = repo.load_responses(db, result.run.id)
    assert all(r.error and r.error.startswith(error_start) and "after 3 attempts" in r.error for r in responses)
    assert set(_labels(db, result.run.id).values()) == {Label.ERROR}  # never DENIAL/EVASIVE


def test_a_flaky_endpoint_succeeds_after_retries(db: Database, small_suite: list[SuiteItem]) -> None:
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def rule(prompt: str, request: dict[str, Any]) -> Reply:
        with lock:
            calls[prompt] += 1
            n = calls[prompt]
        return Reply(status=503) if n == 1 else Reply(raw=b"garbage") if n == 2 else Reply("Fine.")

    with FakeOpenAI(rule) as server:
        result = asyncio.run(run_audit(db, _req(server.base_url, max_retries=3)))
    assert result.transport_errors == 0
    assert {r.content for r in repo.load_responses(db, result.run.id)} == {"Fine."}
    assert set(calls.values()) == {3}


def test_unreachable_endpoint_is_one_error_and_the_run_resumes(db: Database, small_suite: list[SuiteItem]) -> None:
    port = free_port()
    req = _req(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(EndpointUnreachableError, match=r"Cannot reach http://127\.0\.0\.1:\d+/v1 .*Run 1 is kept"):
        asyncio.run(run_audit(db, req))
    assert repo.resolve_run(db, 1).status == "interrupted"
    assert repo.load_responses(db, 1) == []
    with FakeOpenAI(port=port) as server:
        result = asyncio.run(run_audit(db, req))  # the same command again
        assert len(server.requests) == 6
    assert (result.run.id, result.resumed, result.run.status, result.run.responses) == (1, True, "finished", 6)
    assert [r.id for r in repo.list_runs(db)] == [1]


def test_cancelled_run_resumes_without_duplicates(db: Database, small_suite: list[SuiteItem]) -> None:
    with FakeOpenAI(lambda p, r: Reply("Ok.", delay_s=0.05)) as server:

        async def interrupted() -> None:
            stop = asyncio.Event()

            def progress(p: Progress) -> None:
                if p.done >= 3:
                    stop.set()

            task = asyncio.create_task(run_audit(db, _req(server.base_url, concurrency=1), progress))
            await stop.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(interrupted())
        stored = repo.load_responses(db, 1)
        assert repo.resolve_run(db, 1).status == "interrupted"
        assert 3 <= len(stored) < 6
        first_requests = len(server.requests)
        result = asyncio.run(run_audit(db, _req(server.base_url, concurrency=1)))
        assert len(server.requests) - first_requests == 6 - len(stored)
    assert result.resumed and result.attempted == 6 - len(stored)
    rows = repo.load_responses(db, 1)
    assert sorted(r.item_id for r in rows) == sorted(i.item_id for i in small_suite)
    assert len(repo.load_judgements(db, 1)) == 6


def test_resume_retries_transport_errors(db: Database, small_suite: list[SuiteItem]) -> None:
    with FakeOpenAI(lambda p, r: Reply(status=500) if "Cland" in p else Reply("Ok.")) as server:
        first = asyncio.run(run_audit(db, _req(server.base_url, max_retries=0)))
        assert first.transport_errors == 2
        server.set_rule(lambda p, r: Reply("Ok."))
        second = asyncio.run(run_audit(db, _req(server.base_url, resume="latest")))
    assert (second.run.id, second.attempted, second.transport_errors) == (first.run.id, 2, 0)
    assert all(r.error is None for r in repo.load_responses(db, first.run.id))
    assert len(repo.load_responses(db, first.run.id)) == 6
    assert set(_labels(db, first.run.id).values()) == {Label.COMPLETE}


def test_a_finished_run_is_not_resumed_by_rerunning(db: Database, small_suite: list[SuiteItem]) -> None:
    with FakeOpenAI() as server:
        a = asyncio.run(run_audit(db, _req(server.base_url)))
        b = asyncio.run(run_audit(db, _req(server.base_url)))
    assert (a.run.id, b.run.id, b.resumed) == (1, 2, False)


def _haven(*args: str) -> tuple[int, str]:
    result = cli.invoke(build_app(), list(args))
    return result.exit_code, result.output


def test_cli_run_runs_and_report(haven_env: Path) -> None:
    with FakeOpenAI(refuse_if(lambda p: "China" in p)) as server:
        code, output = _haven("audit", "run", "--endpoint", server.base_url, "--languages", "en", "-c", "8")
    assert code == 0, output
    assert output.strip().endswith("run 1")
    code, output = _haven("audit", "runs")
    assert code == 0 and "finished" in output and "308/308" in output
    code, output = _haven("audit", "report", "latest", "--format", "json")
    assert code == 0, output
    report = json.loads(output)
    assert report["schema_version"] and report["run"]["id"] == 1
    assert report["counts"]["responses"] == 308 and report["counts"]["transport_errors"] == 0
    out = haven_env / "r.html"
    code, output = _haven("audit", "report", "1", "--format", "html", "--out", str(out))
    assert code == 0 and out.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")


def test_cli_unknown_language_creates_no_run(haven_env: Path) -> None:
    code, output = _haven("audit", "run", "--endpoint", "http://127.0.0.1:9/v1", "--languages", "en,xx")
    assert code == 1
    assert output.strip() == (
        "error: Suite 'paired-countries' has no 'xx' items; available languages: de, en, es, fr, zh-Hans, zh-Hant."
    )
    code, output = _haven("audit", "report", "latest")
    assert code == 1 and "no audit runs yet" in output


def test_cli_target_without_haven_running(haven_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAVEN_PORT", str(free_port()))
    get_settings.cache_clear()
    code, output = _haven("audit", "run", "--target", "qwen", "--languages", "en")
    assert code == 1
    assert "Cannot reach http://127.0.0.1:" in output and "Start it with `haven serve`" in output
    code, output = _haven("audit", "run", "--languages", "en")
    assert code == 1 and "exactly one of --target MODEL" in output


def test_cli_target_model_must_be_served(haven_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAI(model_id="served-model") as server:
        monkeypatch.setenv("HAVEN_PORT", str(server.port))
        get_settings.cache_clear()
        code, output = _haven("audit", "run", "--target", "other", "--languages", "en")
    assert code == 1
    assert "Model 'other' is not served at http://127.0.0.1:" in output and "served-model" in output


def test_sigkilled_cli_run_resumes_on_rerun(haven_env: Path) -> None:
    """Kill -9 the real `haven audit run` mid-run; the same command again completes it, each item once."""
    with FakeOpenAI(lambda p, r: Reply("Ok.", delay_s=0.05)) as server:
        cmd = [
            str(Path(sys.executable).parent / "haven"),
            "audit",
            "run",
            "--endpoint",
            server.base_url,
            "--suite",
            "paired-stances",
            "--languages",
            "en",
            "-c",
            "2",
        ]
        env = {**os.environ, "HAVEN_HOME": str(haven_env)}
        db = open_database(get_settings().effective_database_url)  # migrated before the child starts
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(repo.attempted_responses(db, 1) if repo.list_runs(db) else ()) < 10:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stored = len(repo.load_responses(db, 1))
        assert 0 < stored < 96
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "run 1"
        assert "Resumed run 1" in done.stderr
    rows = repo.load_responses(db, 1)
    assert len(rows) == 96 and len({(r.item_id, r.sample_index) for r in rows}) == 96
    assert repo.resolve_run(db, 1).status == "finished"
    db.close()


def test_cli_resume_compare_and_calibrate(haven_env: Path) -> None:
    with FakeOpenAI(lambda p, r: Reply(status=500) if "Todesstrafe" in p else Reply("Sure, here it is.")) as server:
        code, output = _haven(
            "audit",
            "run",
            "--endpoint",
            server.base_url,
            "--suite",
            "paired-stances",
            "--languages",
            "de",
            "--retries",
            "0",
        )
        assert code == 0 and output.strip().endswith("run 1")
        assert "4 requests failed after retries" in output
        server.set_rule(refuse_if(lambda p: "Todesstrafe" in p))
        code, output = _haven(
            "audit", "run", "--endpoint", server.base_url, "--suite", "paired-stances", "--languages", "de"
        )
        assert code == 0 and output.strip().endswith("run 2")  # run 1 finished: a new run
        code, output = _haven("audit", "run", "--resume", "1")  # retries the 4 transport errors of run 1
        assert code == 0 and "Resumed run 1: asked 4 missing answers." in output
    code, output = _haven("audit", "compare", "1", "latest")
    assert code == 0, output
    comparison = json.loads(output)
    assert isinstance(comparison, dict) and comparison
    code, output = _haven("audit", "calibrate", "--judge", "heuristic", "--language", "en")
    assert code == 0, output
    assert output.startswith("judge heuristic: n=") and "κ=" in output and "DENIAL" in output


def test_requests_carry_a_fixed_seed_per_item_and_sample_and_no_prefix_reuse(
    db: Database, small_suite: list[SuiteItem]
) -> None:
    from haven.audit.client import item_seed

    with FakeOpenAI() as server:
        run = asyncio.run(run_audit(db, _req(server.base_url, samples=2, seed=7))).run
        first = server.requests
        again = asyncio.run(run_audit(db, _req(server.base_url, samples=2, seed=7))).run  # a finished run: new run
        second = server.requests[len(first) :]
    assert again.id != run.id and again.sampling == run.sampling
    assert all(r["cache_prompt"] is False and "seed_base" not in r for r in first)
    seeds = {(r["messages"][0]["content"], r["seed"]) for r in first}
    assert seeds == {(r["messages"][0]["content"], r["seed"]) for r in second}
    assert len({r["seed"] for r in first}) == 2 * len(small_suite)  # distinct per item and sample
    assert item_seed(7, "t/Aland/en", 0) == item_seed(7, "t/Aland/en", 0) != item_seed(7, "t/Aland/en", 1)


def test_a_strict_server_rejecting_cache_prompt_is_asked_without_it_and_the_run_says_so(
    db: Database, small_suite: list[SuiteItem]
) -> None:
    def strict(prompt: str, request: dict[str, Any]) -> Reply:
        if "cache_prompt" in request:
            return Reply(status=400, raw=b'{"error": {"message": "Unrecognized request argument: cache_prompt"}}')
        return Reply("Fine.")

    with FakeOpenAI(strict) as server:
        result = asyncio.run(run_audit(db, _req(server.base_url, max_retries=0)))
    assert result.transport_errors == 0 and result.run.responses == len(small_suite)
    assert result.run.sampling["rejected_by_endpoint"] == ["cache_prompt"]
