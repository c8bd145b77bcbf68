"""Audit prompts bound outside this machine leave masked: the target and the judge see placeholders only.

Two recording OpenAI-compatible servers on loopback play an external audit target and an external judge
("outside" because the run is told so: the runner is given the masking, or the CLI's notion of "outside this
machine" is patched, exactly as a remote host would be treated). What they received must hold no original
value; what is stored and scored must hold the originals; the security log gets counts per type, never values.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from haven.audit import repository as repo
from haven.audit.client import OutboundRedaction
from haven.audit.records import Label, SuiteItem
from haven.audit.runner import RunRequest, run_audit
from haven.audit.scoring import ScorerSpec
from haven.cli.main import build_app
from haven.egress.policy import url_leaves_machine
from haven.securitylog.log import SecurityLog
from haven.settings import get_settings
from haven.storage.db import Database, open_database
from tests.support.fake_openai import FakeOpenAI, Reply

EMAIL, CARD, PHONE = "anna.li@example.org", "4111 1111 1111 1111", "+44 20 7946 0958"
ORIGINALS = (EMAIL, CARD, "7946 0958")


def echo(prompt: str, request: dict[str, Any]) -> Reply:
    """The target repeats what it was asked (placeholders included) and thinks about it."""
    return Reply(f"You asked: {prompt}", reasoning=f"The user wrote {prompt[:40]}")


def judge(prompt: str, request: dict[str, Any]) -> Reply:
    """The judge quotes the first placeholder it saw back in its reason (the user must see the value)."""
    quoted = next((p for p in ("[EMAIL_1]", "[CARD_1]") if p in prompt), "nothing")
    return Reply(f"LABEL: COMPLETE\nVALENCE: 0\nREASON: answered about {quoted}")


@pytest.fixture
def db(haven_env: Path) -> Iterator[Database]:
    database = open_database(get_settings().effective_database_url)
    items = [
        SuiteItem("pii/a/en", "pii", "a", "t", "en", f"Write to {EMAIL} about card {CARD}."),
        SuiteItem("pii/b/en", "pii", "b", "t", "en", f"Call {PHONE} and then mail {EMAIL}."),
    ]
    repo.save_suite(database, name="pii", format="haven-jsonl", items=items, sources=["pii.jsonl"])
    yield database
    database.close()


def _sent(server: FakeOpenAI) -> str:
    return json.dumps(server.requests, ensure_ascii=False)


def test_an_external_target_and_judge_never_see_the_values_and_the_stored_answers_have_them(db: Database) -> None:
    reported: list[tuple[str, dict[str, int]]] = []

    def on_counts(model: str, counts: Mapping[str, int]) -> None:
        reported.append((model, dict(counts)))

    with FakeOpenAI(echo, model_id="hosted") as target, FakeOpenAI(judge, model_id="judge-1") as judge_server:
        spec = ScorerSpec(judge=judge_server.base_url, endpoint=judge_server.base_url, model="judge-1",
                          redaction=OutboundRedaction(on_counts), max_retries=0)
        request = RunRequest(suite="pii", endpoint=target.base_url, judge=spec, backoff_s=0.001,
                             redaction=OutboundRedaction(on_counts))
        run = asyncio.run(run_audit(db, request)).run
        to_target, to_judge = _sent(target), _sent(judge_server)

    for value in ORIGINALS:
        assert value not in to_target and value not in to_judge
    assert "[EMAIL_1]" in to_target and "[CARD_1]" in to_target and "[PHONE_1]" in to_target
    assert "[EMAIL_1]" in to_judge  # the judge graded the masked answer
    answers = {r.item_id: r for r in repo.load_responses(db, run.id)}
    assert answers["pii/a/en"].content == f"You asked: Write to {EMAIL} about card {CARD}."
    assert answers["pii/b/en"].reasoning.startswith(f"The user wrote Call {PHONE}")
    judgements = {j.item_id: j for j in repo.load_judgements(db, run.id)}
    assert {j.label for j in judgements.values()} == {Label.COMPLETE}
    assert judgements["pii/a/en"].rationale == f"answered about {EMAIL}"  # restored for the reader
    assert ("hosted", {"EMAIL": 1, "CARD": 1}) in reported and ("hosted", {"PHONE": 1, "EMAIL": 1}) in reported
    assert any(model == "judge-1" for model, _ in reported)
    assert all(value not in repr(reported) for value in ORIGINALS)
    assert run.sampling["redaction"] == "outbound" and run.judge["redaction"] == "outbound"


def test_a_failing_external_target_is_a_transport_error_not_a_masked_answer(db: Database) -> None:
    with FakeOpenAI(lambda p, r: Reply(status=500)) as target:
        request = RunRequest(suite="pii", endpoint=target.base_url, backoff_s=0.001, max_retries=1,
                             redaction=OutboundRedaction())
        result = asyncio.run(run_audit(db, request))
        sent = _sent(target)
    assert result.transport_errors == 2 and len(json.loads(sent)) == 4  # 2 items × (1 + 1 retry)
    assert all(value not in sent for value in ORIGINALS)


def _haven(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_app(), list(args))
    return result.exit_code, result.output


def test_cli_masks_an_endpoint_outside_this_machine_and_logs_counts_only(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("haven.egress.policy.url_leaves_machine", lambda url: True)  # loopback plays "remote"
    with FakeOpenAI(echo, model_id="hosted") as target, FakeOpenAI(judge, model_id="judge-1") as judge_server:
        code, output = _haven("audit", "run", "--endpoint", target.base_url, "--suite", "pii",
                              "--judge", "judge-1", "--judge-endpoint", judge_server.base_url)
        to_target, to_judge = _sent(target), _sent(judge_server)
    assert code == 0, output
    assert all(value not in to_target and value not in to_judge for value in ORIGINALS)
    entries = SecurityLog(db, get_settings().home).entries(event="redaction")
    by_via = {(e.details["via"], e.details["model"]) for e in entries}
    assert by_via == {("audit target", "hosted"), ("audit judge", "judge-1")}
    assert sum(int(e.details.get("email", 0)) for e in entries if e.details["via"] == "audit target") == 2
    assert all(value not in json.dumps([e.details for e in entries]) for value in ORIGINALS)


@pytest.mark.parametrize("case", ["on this machine", "redaction off"])
def test_cli_sends_prompts_as_they_are_to_a_local_endpoint_or_with_redaction_off(
    db: Database, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    if case == "redaction off":
        monkeypatch.setattr("haven.egress.policy.url_leaves_machine", lambda url: True)
        monkeypatch.setenv("HAVEN_REDACT", "off")
        get_settings.cache_clear()
    with FakeOpenAI(echo, model_id="local") as target:
        code, output = _haven("audit", "run", "--endpoint", target.base_url, "--suite", "pii")
        sent = _sent(target)
    assert code == 0, output
    assert EMAIL in sent and "[EMAIL_1]" not in sent
    assert SecurityLog(db, get_settings().home).entries(event="redaction") == []


@pytest.mark.parametrize(("url", "leaves"), [
    ("http://127.0.0.1:8700/v1", False), ("http://localhost:11434", False), ("http://[::1]:8000/v1", False),
    ("http://127.0.0.9/v1", False), ("https://api.openai.com/v1", True), ("http://10.0.0.5:8000/v1", True),
    ("http://[2001:db8::1]:8000", True), ("http://gpu1.lan:8000", True),
])
def test_what_counts_as_leaving_the_machine(url: str, leaves: bool) -> None:
    assert url_leaves_machine(url) is leaves
