"""Storage: Alembic migrations and the audit repository, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from haven.audit import repository as repo
from haven.audit.records import Judgement, Label, Response, SuiteItem
from haven.settings import get_settings
from haven.storage.db import Database, downgrade_to, make_engine, normalise_url, open_database, upgrade_to_head
from haven.storage.models import AuditResponse, Base

AUDIT_TABLES = {"audit_suites", "audit_suite_items", "audit_runs", "audit_responses", "audit_judgements"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'haven.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = make_engine(url)
        with engine.begin() as conn:  # a clean schema per test on the shared server
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
    database = open_database(url)
    yield database
    database.close()


def _run(database: Database, key: str = "k1") -> repo.RunInfo:
    return repo.create_run(
        database,
        target="m",
        endpoint="http://127.0.0.1:1/v1",
        model="m",
        suite="paired-countries",
        suite_version="1.0.0",
        languages=["en"],
        samples=1,
        sampling={"temperature": 0.0},
        judge={"judge": "heuristic", "kind": "heuristic"},
        config_key=key,
        item_count=2,
    )


def test_default_database_is_sqlite_under_haven_home(haven_env: Path) -> None:
    url = get_settings().effective_database_url
    assert url == f"sqlite:///{haven_env / 'haven.db'}"
    database = open_database(url)
    try:
        assert (haven_env / "haven.db").is_file()
        with database.engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        database.close()


def test_postgresql_urls_use_psycopg3() -> None:
    assert normalise_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_migrations_upgrade_downgrade_upgrade(db: Database) -> None:
    assert set(inspect(db.engine).get_table_names()) >= AUDIT_TABLES
    downgrade_to(db.engine, "base")
    assert not AUDIT_TABLES & set(inspect(db.engine).get_table_names())
    upgrade_to_head(db.engine)
    upgrade_to_head(db.engine)  # idempotent
    assert set(inspect(db.engine).get_table_names()) >= AUDIT_TABLES


def test_migration_matches_models(db: Database) -> None:
    """The newest migration creates exactly the columns the models declare."""
    insp = inspect(db.engine)
    for table in Base.metadata.sorted_tables:
        assert {c["name"] for c in insp.get_columns(table.name)} == {c.name for c in table.columns}, table.name


def test_runs_responses_judgements_round_trip(db: Database) -> None:
    run = _run(db)
    r1 = Response(
        "s/a/US/en",
        0,
        "Sure, here it is.",
        reasoning="think",
        finish_reason="stop",
        prompt_tokens=5,
        completion_tokens=4,
        latency_s=0.25,
        http_status=200,
    )
    r2 = Response("s/a/CN/en", 0, "", error="HTTP 500 (after 4 attempts)", http_status=500)
    j1 = Judgement("s/a/US/en", 0, Label.COMPLETE, valence=1.0, flags=("x",), label_probs={"COMPLETE": 0.9})
    repo.save_results(db, run.id, [(r1, j1), (r2, None)])
    assert repo.load_responses(db, run.id) == [r1, r2]
    assert repo.load_judgements(db, run.id) == [j1]
    assert repo.completed_responses(db, run.id) == {("s/a/US/en", 0)}  # the failed one is retried on resume
    assert repo.attempted_responses(db, run.id) == {("s/a/US/en", 0), ("s/a/CN/en", 0)}
    info = repo.resolve_run(db, "latest")
    assert (info.id, info.responses, info.judgements, info.status) == (run.id, 2, 1, "running")


def test_duplicate_response_rows_are_refused(db: Database) -> None:
    run = _run(db)
    response = Response("i", 0, "a")
    repo.save_results(db, run.id, [(response, None)])
    with pytest.raises(IntegrityError):
        repo.save_results(db, run.id, [(response, None)])
    assert len(repo.load_responses(db, run.id)) == 1  # the failed transaction stored nothing
    repo.save_results(db, run.id, [(Response("i", 0, "b"), None)], replace=True)
    assert [r.content for r in repo.load_responses(db, run.id)] == ["b"]


def test_latest_alias_and_unknown_runs(db: Database) -> None:
    with pytest.raises(repo.RunNotFoundError, match="no audit runs yet"):
        repo.resolve_run(db, "latest")
    first, second = _run(db, "a"), _run(db, "b")
    assert repo.resolve_run(db, "latest").id == second.id
    assert repo.resolve_run(db, str(first.id)).id == first.id
    with pytest.raises(repo.RunNotFoundError, match="There is no audit run 999"):
        repo.resolve_run(db, "999")
    with pytest.raises(repo.RunNotFoundError, match="is not a run id"):
        repo.resolve_run(db, "abc")
    assert [r.id for r in repo.list_runs(db)] == [second.id, first.id]


def test_unfinished_run_lookup_by_config_key(db: Database) -> None:
    run = _run(db, "same")
    assert repo.find_unfinished_run(db, "same") == repo.resolve_run(db, run.id)
    repo.set_run_status(db, run.id, "finished")
    assert repo.find_unfinished_run(db, "same") is None
    assert repo.resolve_run(db, run.id).finished_at is not None


def test_deleting_a_run_cascades(db: Database) -> None:
    run = _run(db)
    repo.save_results(db, run.id, [(Response("i", 0, "a"), Judgement("i", 0, Label.DENIAL))])
    repo.delete_runs(db, [run.id])
    with db.session() as session:
        assert session.query(AuditResponse).count() == 0


def test_imported_suite_round_trip_and_name_clash(db: Database) -> None:
    items = [
        SuiteItem("x/1", "x", "US", "t", "en", "Prompt about the US", pair_key="t", metadata={"k": 1}),
        SuiteItem("x/2", "x", "CN", "t", "zh-Hans", "关于中国", pair_key="t", stance="pro", target="China"),
    ]
    assert repo.save_suite(db, name="x", format="haven-jsonl", items=items, sources=["a.jsonl"]) == 2
    assert repo.load_suite(db, "x") == ("1", items)
    with pytest.raises(repo.SuiteExistsError, match="--replace"):
        repo.save_suite(db, name="x", format="haven-jsonl", items=items[:1], sources=["b.jsonl"])
    assert repo.load_suite(db, "x") == ("1", items)  # unchanged
    repo.save_suite(db, name="x", format="haven-jsonl", items=items[:1], sources=["b.jsonl"], replace=True)
    assert repo.load_suite(db, "x") == ("1", items[:1])
    [summary] = repo.list_suites(db)
    assert (summary.name, summary.items, summary.languages, summary.sources) == ("x", 1, ["en"], ["b.jsonl"])
    assert repo.load_suite(db, "missing") is None


def test_runner_stores_a_whole_run(db: Database) -> None:
    """The runner's bulk writes and resume queries work on this backend too."""
    import asyncio

    from haven.audit.runner import RunRequest, run_audit
    from tests.support.fake_openai import FakeOpenAI, refuse_if

    with FakeOpenAI(refuse_if(lambda p: "死刑" in p)) as server:
        req = RunRequest(suite="paired-stances", endpoint=server.base_url, languages=("zh-Hant",), concurrency=4)
        result = asyncio.run(run_audit(db, req))
    assert (result.run.status, result.run.responses, result.run.judgements) == ("finished", 96, 96)
    assert Counter(j.label for j in repo.load_judgements(db, result.run.id)) == {Label.COMPLETE: 92, Label.DENIAL: 4}
