"""Typed reads and writes of the audit tables, used by the runner and the CLI.

Everything takes a :class:`~haven.storage.db.Database` and speaks the audit's own dataclasses
(:mod:`haven.audit.records`), so callers never touch ORM rows. ``resolve_run(db, "latest")``
implements the ``latest`` alias accepted wherever a run id is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select

from haven.audit.records import Judgement, Label, Response, SuiteItem
from haven.errors import AuditError, NotFoundError
from haven.storage.db import Database
from haven.storage.models import AuditJudgement, AuditResponse, AuditRun, AuditSuite, AuditSuiteItem, utcnow


class RunNotFoundError(NotFoundError):
    code = "run_not_found"


class SuiteExistsError(AuditError):
    code = "suite_exists"


@dataclass(frozen=True)
class RunInfo:
    id: int
    status: str
    target: str
    endpoint: str
    model: str | None
    model_hash: str | None
    suite: str
    suite_version: str
    languages: list[str]
    samples: int
    sampling: dict[str, Any]
    judge: dict[str, Any]
    config_key: str
    item_count: int
    created_at: datetime
    finished_at: datetime | None
    responses: int = 0
    judgements: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The run as the report echoes it (JSON-friendly)."""
        return {
            "id": self.id,
            "status": self.status,
            "target": self.target,
            "endpoint": self.endpoint,
            "model": self.model,
            "model_hash": self.model_hash,
            "suite": self.suite,
            "suite_version": self.suite_version,
            "languages": list(self.languages),
            "samples": self.samples,
            "sampling": dict(self.sampling),
            "judge": dict(self.judge),
            "item_count": self.item_count,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


@dataclass(frozen=True)
class SuiteSummary:
    name: str
    version: str
    format: str
    items: int
    languages: list[str]
    sources: list[str]
    created_at: datetime


# --- suites -------------------------------------------------------------------------------


def save_suite(
    db: Database,
    *,
    name: str,
    format: str,
    items: Sequence[SuiteItem],
    sources: Sequence[str],
    version: str = "1",
    description: str = "",
    replace: bool = False,
) -> int:
    """Store an imported suite in one transaction; returns the number of items stored."""
    with db.session() as session:
        existing = session.scalar(select(AuditSuite).where(AuditSuite.name == name))
        if existing is not None:
            if not replace:
                raise SuiteExistsError(f"A suite named {name!r} already exists; pass --replace to overwrite it.")
            session.delete(existing)
            session.flush()
        suite = AuditSuite(name=name, version=version, format=format, description=description, sources=list(sources))
        suite.items = [
            AuditSuiteItem(
                position=n,
                item_id=item.item_id,
                group=item.group,
                template_id=item.template_id,
                language=item.language,
                prompt=item.prompt,
                pair_key=item.pair_key,
                stance=item.stance,
                target=item.target,
                meta=dict(item.metadata),
                translation_key=item.translation_key,
                language_detected=item.language_detected,
                language_confidence=item.language_confidence,
            )
            for n, item in enumerate(items)
        ]
        session.add(suite)
    return len(items)


def list_suites(db: Database) -> list[SuiteSummary]:
    with db.session() as session:
        rows = session.scalars(select(AuditSuite).order_by(AuditSuite.name)).all()
        out = []
        for suite in rows:
            langs = session.scalars(
                select(AuditSuiteItem.language).where(AuditSuiteItem.suite_id == suite.id).distinct()
            ).all()
            count = session.scalar(select(func.count()).where(AuditSuiteItem.suite_id == suite.id)) or 0
            out.append(
                SuiteSummary(
                    suite.name, suite.version, suite.format, count, sorted(langs), suite.sources, suite.created_at
                )
            )
        return out


def load_suite(db: Database, name: str) -> tuple[str, list[SuiteItem]] | None:
    """(version, items) of an imported suite, or None when there is none by that name."""
    with db.session() as session:
        suite = session.scalar(select(AuditSuite).where(AuditSuite.name == name))
        if suite is None:
            return None
        items = [
            SuiteItem(
                item_id=row.item_id,
                suite=name,
                group=row.group,
                template_id=row.template_id,
                language=row.language,
                prompt=row.prompt,
                pair_key=row.pair_key,
                stance=row.stance,
                target=row.target,
                metadata=dict(row.meta or {}),
                translation_key=row.translation_key,
                language_detected=row.language_detected,
                language_confidence=row.language_confidence,
            )
            for row in suite.items
        ]
        return suite.version, items


# --- runs ---------------------------------------------------------------------------------


def _info(row: AuditRun, responses: int = 0, judgements: int = 0) -> RunInfo:
    return RunInfo(
        id=row.id,
        status=row.status,
        target=row.target,
        endpoint=row.endpoint,
        model=row.model,
        model_hash=row.model_hash,
        suite=row.suite,
        suite_version=row.suite_version,
        languages=list(row.languages),
        samples=row.samples,
        sampling=dict(row.sampling or {}),
        judge=dict(row.judge or {}),
        config_key=row.config_key,
        item_count=row.item_count,
        created_at=row.created_at,
        finished_at=row.finished_at,
        responses=responses,
        judgements=judgements,
    )


def create_run(
    db: Database,
    *,
    target: str,
    endpoint: str,
    model: str | None,
    suite: str,
    suite_version: str,
    languages: Sequence[str],
    samples: int,
    sampling: dict[str, Any],
    judge: dict[str, Any],
    config_key: str,
    item_count: int,
    model_hash: str | None = None,
) -> RunInfo:
    with db.session() as session:
        row = AuditRun(
            status="running",
            target=target,
            endpoint=endpoint,
            model=model,
            model_hash=model_hash,
            suite=suite,
            suite_version=suite_version,
            languages=list(languages),
            samples=samples,
            sampling=sampling,
            judge=judge,
            config_key=config_key,
            item_count=item_count,
        )
        session.add(row)
        session.flush()
        return _info(row)


def find_unfinished_run(db: Database, config_key: str) -> RunInfo | None:
    """The newest unfinished run with exactly this configuration (what rerunning a command resumes)."""
    with db.session() as session:
        row = session.scalar(
            select(AuditRun)
            .where(AuditRun.config_key == config_key, AuditRun.status != "finished")
            .order_by(AuditRun.id.desc())
            .limit(1)
        )
        return _info(row) if row else None


def _counts(session: Any, run_id: int) -> tuple[int, int]:
    responses = session.scalar(select(func.count()).where(AuditResponse.run_id == run_id)) or 0
    judgements = session.scalar(select(func.count()).where(AuditJudgement.run_id == run_id)) or 0
    return int(responses), int(judgements)


def resolve_run(db: Database, ref: str | int) -> RunInfo:
    """A run by id, or the newest one for ``latest``."""
    with db.session() as session:
        if str(ref).strip().lower() == "latest":
            row = session.scalar(select(AuditRun).order_by(AuditRun.id.desc()).limit(1))
            if row is None:
                raise RunNotFoundError("There are no audit runs yet; start one with `haven audit run`.")
        else:
            try:
                run_id = int(ref)
            except ValueError:
                raise RunNotFoundError(
                    f"{ref!r} is not a run id (a number from `haven audit runs`, or latest)."
                ) from None
            row = session.get(AuditRun, run_id)
            if row is None:
                raise RunNotFoundError(f"There is no audit run {run_id}; `haven audit runs` lists them.")
        return _info(row, *_counts(session, row.id))


def list_runs(db: Database, limit: int = 50) -> list[RunInfo]:
    with db.session() as session:
        rows = session.scalars(select(AuditRun).order_by(AuditRun.id.desc()).limit(limit)).all()
        return [_info(row, *_counts(session, row.id)) for row in rows]


def set_run_status(db: Database, run_id: int, status: str, *, model_hash: str | None = None) -> None:
    with db.session() as session:
        row = session.get(AuditRun, run_id)
        if row is None:
            raise RunNotFoundError(f"There is no audit run {run_id}.")
        row.status = status
        if model_hash:
            row.model_hash = model_hash
        row.finished_at = utcnow() if status == "finished" else None


def note_rejected_fields(db: Database, run_id: int, fields: Sequence[str]) -> None:
    """Record that the endpoint refused these reproducibility fields (the run was sent without them)."""
    with db.session() as session:
        row = session.get(AuditRun, run_id)
        if row is None:
            raise RunNotFoundError(f"There is no audit run {run_id}.")
        row.sampling = {**row.sampling, "rejected_by_endpoint": sorted(set(fields))}


# --- responses and judgements ------------------------------------------------------------


def completed_responses(db: Database, run_id: int) -> set[tuple[str, int]]:
    """(item_id, sample) pairs with a stored response that succeeded (errored ones are retried on resume)."""
    with db.session() as session:
        rows = session.execute(
            select(AuditResponse.item_id, AuditResponse.sample_index).where(
                AuditResponse.run_id == run_id, AuditResponse.error.is_(None)
            )
        ).all()
        return {(r[0], r[1]) for r in rows}


def attempted_responses(db: Database, run_id: int) -> set[tuple[str, int]]:
    """(item_id, sample) pairs with any stored response, failed or not."""
    with db.session() as session:
        rows = session.execute(
            select(AuditResponse.item_id, AuditResponse.sample_index).where(AuditResponse.run_id == run_id)
        ).all()
        return {(r[0], r[1]) for r in rows}


def judged_ok(db: Database, run_id: int) -> set[tuple[str, int]]:
    """Judged (item, sample) pairs, minus those that failed at the judge's transport (re-scored on resume)."""
    with db.session() as session:
        rows = session.execute(
            select(AuditJudgement.item_id, AuditJudgement.sample_index, AuditJudgement.flags).where(
                AuditJudgement.run_id == run_id
            )
        ).all()
        return {(r[0], r[1]) for r in rows if "judge_error" not in (r[2] or ())}


def save_results(
    db: Database,
    run_id: int,
    results: Sequence[tuple[Response, Judgement | None]],
    *,
    replace: bool = False,
) -> None:
    """Store many responses with their judgements in one transaction (bulk inserts: the runner's fast path).

    ``replace`` first deletes earlier rows for the same (item, sample), e.g. failed attempts being retried.
    """
    if not results:
        return
    now = utcnow()
    with db.session() as session:
        if replace:
            for response, _ in results:
                for model in (AuditResponse, AuditJudgement):
                    session.execute(
                        delete(model).where(
                            model.run_id == run_id,
                            model.item_id == response.item_id,
                            model.sample_index == response.sample_index,
                        )
                    )
        session.execute(
            insert(AuditResponse),
            [
                {
                    "run_id": run_id,
                    "item_id": r.item_id,
                    "sample_index": r.sample_index,
                    "content": r.content,
                    "reasoning": r.reasoning,
                    "finish_reason": r.finish_reason,
                    "prompt_tokens": r.prompt_tokens,
                    "completion_tokens": r.completion_tokens,
                    "latency_s": r.latency_s,
                    "error": r.error,
                    "http_status": r.http_status,
                    "created_at": now,
                }
                for r, _ in results
            ],
        )
        judgements = [j for _, j in results if j is not None]
        if judgements:
            session.execute(insert(AuditJudgement), [_judgement_values(run_id, j, now) for j in judgements])


def _judgement_values(run_id: int, j: Judgement, now: datetime) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "item_id": j.item_id,
        "sample_index": j.sample_index,
        "label": j.label.value,
        "valence": j.valence,
        "flags": list(j.flags),
        "judge": j.judge,
        "label_probs": dict(j.label_probs) if j.label_probs is not None else None,
        "judge_refused": j.judge_refused,
        "parse_error": j.parse_error,
        "thought_suppressed": j.thought_suppressed,
        "rationale": j.rationale,
        "created_at": now,
    }


def _judgement_row(run_id: int, j: Judgement) -> AuditJudgement:
    return AuditJudgement(
        run_id=run_id,
        item_id=j.item_id,
        sample_index=j.sample_index,
        label=j.label.value,
        valence=j.valence,
        flags=list(j.flags),
        judge=j.judge,
        label_probs=dict(j.label_probs) if j.label_probs is not None else None,
        judge_refused=j.judge_refused,
        parse_error=j.parse_error,
        thought_suppressed=j.thought_suppressed,
        rationale=j.rationale,
    )


def save_judgement(db: Database, run_id: int, judgement: Judgement) -> None:
    with db.session() as session:
        session.execute(
            delete(AuditJudgement).where(
                AuditJudgement.run_id == run_id,
                AuditJudgement.item_id == judgement.item_id,
                AuditJudgement.sample_index == judgement.sample_index,
            )
        )
        session.add(_judgement_row(run_id, judgement))


def load_responses(db: Database, run_id: int) -> list[Response]:
    with db.session() as session:
        rows = session.scalars(
            select(AuditResponse).where(AuditResponse.run_id == run_id).order_by(AuditResponse.id)
        ).all()
        return [
            Response(
                item_id=r.item_id,
                sample_index=r.sample_index,
                content=r.content,
                reasoning=r.reasoning,
                finish_reason=r.finish_reason,
                prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens,
                latency_s=r.latency_s,
                error=r.error,
                http_status=r.http_status,
            )
            for r in rows
        ]


def load_judgements(db: Database, run_id: int) -> list[Judgement]:
    with db.session() as session:
        rows = session.scalars(
            select(AuditJudgement).where(AuditJudgement.run_id == run_id).order_by(AuditJudgement.id)
        ).all()
        return [
            Judgement(
                item_id=r.item_id,
                sample_index=r.sample_index,
                label=Label(r.label),
                valence=r.valence,
                flags=tuple(r.flags or ()),
                judge=r.judge,
                label_probs=r.label_probs,
                judge_refused=r.judge_refused,
                parse_error=r.parse_error,
                thought_suppressed=r.thought_suppressed,
                rationale=r.rationale,
            )
            for r in rows
        ]


def delete_runs(db: Database, run_ids: Iterable[int]) -> None:
    with db.session() as session:
        session.execute(delete(AuditRun).where(AuditRun.id.in_(list(run_ids))))
