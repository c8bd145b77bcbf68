"""The audit runner: send every suite item to the target, score it, store both as they complete.

Resume design: a run is identified by a *config key*, the hash of everything that defines it
(suite and version, languages, samples, endpoint, model, sampling, judge). Each response and its
judgement are committed together the moment they complete, keyed (run, item, sample) with a unique
constraint. Starting a run therefore (1) resumes ``--resume RUN`` when given, else (2) resumes the
newest *unfinished* run with the same config key (rerunning an interrupted command continues it),
else (3) creates a new run. A resumed run asks only for what is missing: items without a
successful response (earlier transport errors are retried) and responses whose judgement is
missing or failed at the judge's transport. An interrupted run is marked ``interrupted``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from haven.audit import repository as repo
from haven.audit.client import EndpointClient, OutboundRedaction, api_base
from haven.audit.records import Judgement, Response, SuiteItem
from haven.audit.scoring import Scorer, ScorerSpec, build_scorer
from haven.audit.suites import filter_languages, load_suite
from haven.errors import AuditError, EndpointUnreachableError
from haven.storage.db import Database

ProgressFn = Callable[["Progress"], None]


@dataclass
class Progress:
    total: int
    done: int = 0
    transport_errors: int = 0
    run_id: int = 0
    resumed_from: int = 0


@dataclass(frozen=True)
class RunRequest:
    suite: str
    endpoint: str
    model: str | None = None
    target: str | None = None
    """Label shown in reports; defaults to the model name."""
    api_key: str | None = None
    languages: tuple[str, ...] = ()
    samples: int = 1
    concurrency: int = 4
    sampling: dict[str, Any] = field(default_factory=lambda: {"temperature": 0.0, "max_tokens": 512})
    judge: ScorerSpec = field(default_factory=ScorerSpec)
    resume: int | str | None = None
    require_listed: bool = False
    """Fail when the model is not in the endpoint's /v1/models (used for Haven-served targets)."""
    unreachable_hint: str = ""
    max_retries: int = 3
    backoff_s: float = 0.5
    timeout_s: float = 300.0
    seed: int = 0
    """Base of the fixed per-(item, sample) seeds (client.item_seed); recorded with the run."""
    cache_prompt: bool = False
    """Sent as ``cache_prompt``: False turns KV prefix reuse off (Haven, llama-server) for reproducible answers."""
    redaction: OutboundRedaction | None = None
    """Set when the endpoint is outside this machine (HAVEN_REDACT=outbound): prompts leave masked."""

    def effective_sampling(self) -> dict[str, Any]:
        """The sampling as sent and recorded: the user's settings plus the reproducibility fields.

        A rerun of a stored run passes its recorded sampling back, seed and cache_prompt included. A run whose
        prompts left masked says so (``redaction``): the model answered placeholders, not the values.
        """
        sampling = {
            "seed_base": self.seed,
            "seed_scheme": "sha256(seed_base:item_id:sample) & 0x7fffffff",
            "cache_prompt": self.cache_prompt,
            **{k: v for k, v in self.sampling.items() if k != "redaction"},
        }
        if self.redaction is not None:
            sampling["redaction"] = "outbound"
        return sampling


@dataclass(frozen=True)
class RunResult:
    run: repo.RunInfo
    attempted: int
    transport_errors: int
    resumed: bool


def config_key(req: RunRequest, suite_version: str, languages: Sequence[str], model: str | None) -> str:
    spec = req.judge.describe()
    blob = json.dumps(
        {
            "suite": req.suite,
            "suite_version": suite_version,
            "languages": sorted(languages),
            "samples": req.samples,
            "endpoint": api_base(req.endpoint),
            "model": model,
            "sampling": req.effective_sampling(),
            "judge": spec,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


async def run_audit(db: Database, req: RunRequest, progress: ProgressFn | None = None) -> RunResult:
    """Run (or resume) an audit; returns when every item has a stored response and judgement."""
    if req.samples < 1 or req.concurrency < 1:
        raise AuditError("--samples and --concurrency must be at least 1.")
    suite = load_suite(req.suite, db)
    items = filter_languages(suite, req.languages or None)
    languages = sorted({i.language for i in items})
    by_id = {i.item_id: i for i in items}

    run: repo.RunInfo | None = None
    if req.resume is not None:
        run = repo.resolve_run(db, req.resume)
        if run.suite != req.suite and req.suite:
            raise AuditError(f"Run {run.id} audited suite {run.suite!r}, not {req.suite!r}.")
        if run.languages != languages:
            items = filter_languages(suite, run.languages)
            by_id = {i.item_id: i for i in items}
            languages = run.languages
    key = config_key(req, suite.version, languages, req.model)
    if run is None:
        run = repo.find_unfinished_run(db, key)
    resumed = run is not None
    if run is None:
        run = repo.create_run(
            db,
            target=req.target or req.model or api_base(req.endpoint),
            endpoint=api_base(req.endpoint),
            model=req.model,
            suite=suite.name,
            suite_version=suite.version,
            languages=languages,
            samples=req.samples,
            sampling=req.effective_sampling(),
            judge=req.judge.describe(),
            config_key=key,
            item_count=len(items) * req.samples,
        )
    client = EndpointClient(
        run.endpoint,
        model=run.model or req.model,
        api_key=req.api_key,
        concurrency=req.concurrency,
        timeout_s=req.timeout_s,
        max_retries=req.max_retries,
        backoff_s=req.backoff_s,
        redaction=req.redaction,
    )
    scorer = build_scorer(req.judge)
    try:
        try:
            info = await client.probe(require_listed=req.require_listed)
        except EndpointUnreachableError as exc:
            repo.set_run_status(db, run.id, "interrupted")
            hint = f" {req.unreachable_hint}" if req.unreachable_hint else ""
            raise EndpointUnreachableError(
                f"{exc.message}{hint} Run {run.id} is kept: rerun the same command or "
                f"`haven audit run --resume {run.id}` to continue."
            ) from exc
        repo.set_run_status(db, run.id, "running", model_hash=info.model_hash)
        if run.model is None:
            _record_model(db, run.id, info.model)
        result = await _drive(db, run, items, by_id, req, client, scorer, progress, resumed)
        if client.rejected_fields:
            repo.note_rejected_fields(db, run.id, sorted(client.rejected_fields))
            result = RunResult(repo.resolve_run(db, run.id), result.attempted, result.transport_errors, result.resumed)
        return result
    except BaseException:
        # Ctrl-C, cancellation or an error: what is stored stays, and the run is resumable.
        repo.set_run_status(db, run.id, "interrupted")
        raise
    finally:
        await scorer.aclose()
        await client.aclose()


def _record_model(db: Database, run_id: int, model: str) -> None:
    from haven.storage.models import AuditRun

    with db.session() as session:
        row = session.get(AuditRun, run_id)
        if row is not None:
            row.model = model
            if row.target == row.endpoint:
                row.target = model


async def _drive(
    db: Database,
    run: repo.RunInfo,
    items: Sequence[SuiteItem],
    by_id: dict[str, SuiteItem],
    req: RunRequest,
    client: EndpointClient,
    scorer: Scorer,
    progress: ProgressFn | None,
    resumed: bool,
) -> RunResult:
    have = repo.completed_responses(db, run.id)
    judged = repo.judged_ok(db, run.id)
    samples = run.samples
    to_ask = [(i, s) for i in items for s in range(samples) if (i.item_id, s) not in have]
    # Responses stored earlier whose judgement is missing (interrupted between) or failed at the judge.
    stored = {(r.item_id, r.sample_index): r for r in repo.load_responses(db, run.id)} if have - judged else {}
    to_score = [(by_id[k[0]], stored[k]) for k in sorted(have - judged) if k[0] in by_id and k in stored]

    sampling = run.sampling or req.effective_sampling()  # a resumed run keeps its recorded seeds
    state = Progress(total=len(items) * samples, run_id=run.id)
    state.done = state.total - len(to_ask) - len(to_score)
    state.resumed_from = state.done
    if progress:
        progress(state)

    queue: asyncio.Queue[tuple[SuiteItem, int | Response]] = asyncio.Queue()
    for scored in to_score:
        queue.put_nowait(scored)
    for asked in to_ask:
        queue.put_nowait(asked)

    retried = {(i.item_id, s) for i, s in to_ask} & repo.attempted_responses(db, run.id)
    writer = _Writer(db, run.id, retried)

    async def worker() -> None:
        while True:
            try:
                item, what = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if isinstance(what, Response):
                judgement = await _score(scorer, item, what)
                if judgement is not None:
                    repo.save_judgement(db, run.id, judgement)
            else:
                response = await client.chat(item, what, sampling)
                judgement = await _score(scorer, item, response)
                # Response and judgement are stored together: a resume never sees half an item.
                writer.add(response, judgement)
                if response.error:
                    state.transport_errors += 1
            state.done += 1
            if progress:
                progress(state)

    workers = [asyncio.create_task(worker()) for _ in range(min(req.concurrency, max(1, queue.qsize())))]
    flusher = asyncio.create_task(writer.run())
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    finally:
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        writer.flush()  # whatever completed before an interruption is kept
    repo.set_run_status(db, run.id, "finished")
    return RunResult(
        run=repo.resolve_run(db, run.id),
        attempted=len(to_ask),
        transport_errors=state.transport_errors,
        resumed=resumed,
    )


async def _score(scorer: Scorer, item: SuiteItem, response: Response) -> Judgement | None:
    """The judgement, or None when the judge itself failed unexpectedly (then a resume re-scores it)."""
    try:
        return await scorer.score(item, response)
    except AuditError:
        return None


class _Writer:
    """Buffers completed (response, judgement) pairs and commits them every FLUSH_S or FLUSH_N.

    One commit per item costs more than the whole HTTP round trip on a fast target; batching keeps
    the runner from being the bottleneck. At most FLUSH_S of work is lost to a hard kill, and a
    resume redoes exactly that.
    """

    FLUSH_S = 0.2
    FLUSH_N = 64

    def __init__(self, db: Database, run_id: int, retried: set[tuple[str, int]]) -> None:
        self.db = db
        self.run_id = run_id
        self.retried = retried
        self.buffer: list[tuple[Response, Judgement | None]] = []

    def add(self, response: Response, judgement: Judgement | None) -> None:
        self.buffer.append((response, judgement))
        if len(self.buffer) >= self.FLUSH_N:
            self.flush()

    def flush(self) -> None:
        batch, self.buffer = self.buffer, []
        if not batch:
            return
        replace = [(r, j) for r, j in batch if (r.item_id, r.sample_index) in self.retried]
        fresh = [(r, j) for r, j in batch if (r.item_id, r.sample_index) not in self.retried]
        repo.save_results(self.db, self.run_id, fresh)
        repo.save_results(self.db, self.run_id, replace, replace=True)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.FLUSH_S)
            self.flush()
