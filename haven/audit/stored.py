"""Reports and comparisons of stored audit runs: the one place ``haven audit report|compare`` and the
admin web pages turn a run in the database into a report dict (items re-read from the suite)."""

from __future__ import annotations

from typing import Any

from haven.storage.db import Database


def build_report(db: Database, ref: str, calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report dict of a stored run (items re-read from the suite; ids are stable across versions)."""
    from haven.audit import repository as repo
    from haven.audit.metrics import compute_report
    from haven.audit.suites import load_suite

    run = repo.resolve_run(db, ref)
    suite = load_suite(run.suite, db)
    items = [i for i in suite.items if i.language in set(run.languages)]
    responses = repo.load_responses(db, run.id)
    judgements = repo.load_judgements(db, run.id)
    if calibration is None and run.judge.get("kind") == "heuristic":
        from haven.audit.calibration import calibrate
        from haven.audit.scoring import ScorerSpec, build_scorer

        calibration = calibrate(build_scorer(ScorerSpec())).as_dict()  # no network: cheap and honest
    return compute_report(run.as_dict(), items, responses, judgements, calibration, judge=run.judge)


def compare_runs(db: Database, ref_a: str, ref_b: str) -> dict[str, Any]:
    """Two stored runs side by side (see :func:`haven.audit.metrics.compare_reports`)."""
    from haven.audit.metrics import compare_reports

    return compare_reports(build_report(db, ref_a), build_report(db, ref_b))
