"""``haven audit …``: suites, runs, reports, comparisons and judge calibration.

Thin layer: parse options, open the database, call :mod:`haven.audit` (runner, suites, importers,
metrics, reports, calibration) and print with Rich. Errors are HavenError subclasses, printed as
one line by :mod:`haven.cli.main`.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from haven.errors import AuditError
from haven.settings import get_settings

console = Console(highlight=False, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)


def _db() -> Any:
    from haven.storage.db import open_database

    return open_database(get_settings().effective_database_url)


def _api_key(var: str | None, what: str) -> str | None:
    if not var:
        return None
    value = os.environ.get(var)
    if not value:
        raise AuditError(f"{what}: the environment variable {var} is not set.")
    return value


def _languages(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip()) if value else ()


def _haven_base() -> str:
    settings = get_settings()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    return f"http://{host}:{settings.port}/v1"


def _judge_spec(judge: str, judge_endpoint: str | None, judge_key_env: str | None, samples: int) -> Any:
    from haven.audit.scoring import ScorerSpec

    key = _api_key(judge_key_env, "--judge-api-key-env")
    if judge_endpoint:
        model = None if judge == "heuristic" else judge
        return ScorerSpec(judge=judge_endpoint, endpoint=judge_endpoint, model=model, api_key=key, samples=samples)
    if judge == "heuristic":
        return ScorerSpec()
    return ScorerSpec(judge=judge, endpoint=_haven_base(), model=judge, api_key=key, samples=samples)


def _stored_judge(described: dict[str, Any], key_env: str | None) -> Any:
    """The ScorerSpec a stored run was judged with (its describe() dict); the API key comes from key_env."""
    from haven.audit.scoring import ScorerSpec

    if described.get("kind", "heuristic") == "heuristic":
        return ScorerSpec()
    return ScorerSpec(
        judge=str(described["judge"]),
        endpoint=described.get("endpoint"),
        model=described.get("model"),
        api_key=_api_key(key_env, "--judge-api-key-env"),
        samples=int(described.get("samples") or 1),
        temperature=float(described.get("temperature") or 0.0),
        prompt_version=str(described.get("prompt_version") or "v1"),
    )


def _outbound_redaction(db: Any, via: str) -> Any:
    """Masking for prompts bound outside this machine (None with HAVEN_REDACT=off); counts go to the security log."""
    from haven.audit.client import OutboundRedaction
    from haven.securitylog.log import SecurityLog

    settings = get_settings()
    if settings.redact == "off":
        return None
    log = SecurityLog(db, settings.home)

    def report(model: str, counts: Any) -> None:
        # Counts per type, never the values (issue 17).
        log.append("redaction", details={"model": model, "via": via, **{k.lower(): v for k, v in counts.items()}})

    return OutboundRedaction(report)


def _external_judge(spec: Any, db: Any) -> Any:
    """``spec`` masked on its way out when the judge is an endpoint outside this machine."""
    import dataclasses

    from haven.egress.policy import url_leaves_machine

    if spec.is_heuristic or not spec.judge.startswith(("http://", "https://")) or not url_leaves_machine(spec.judge):
        return spec
    return dataclasses.replace(spec, redaction=_outbound_redaction(db, "audit judge"))


# --- suites -------------------------------------------------------------------------------

suites_app = typer.Typer(help="Prompt suites: built-in and imported.", no_args_is_help=True)


@suites_app.command("import")
def suites_import(
    paths: Annotated[list[Path], typer.Argument(help="One or more files forming one suite.")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="anthropic-csv|speechmap-jsonl|promptfoo-csv|haven-jsonl")
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Name of the suite in Haven.")],
    language: Annotated[
        list[str] | None,
        typer.Option(
            "--language",
            "-l",
            help="ISO 639-1 code (optionally zh-Hans, pt-BR…): once for every file, or once per file in order. "
            "Default: detected offline.",
        ),
    ] = None,
    allow_partial: Annotated[
        bool, typer.Option("--allow-partial", help="Import translated files even when some ids are missing in one.")
    ] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an imported suite of that name.")] = False,
) -> None:
    """Import external suite files (nothing is stored if any file is malformed).

    Items sharing an id across files of different languages are the same request in translation and are
    compared across languages in the report.
    """
    from haven.audit import repository as repo
    from haven.audit.importers import import_suite
    from haven.audit.suites import BUILTIN_SUITES

    if name in BUILTIN_SUITES:
        raise AuditError(f"{name!r} is a built-in suite; choose another --name.")
    result = import_suite(paths, format, name, languages_given=language or (), allow_partial=allow_partial)
    for f in result.files:
        detected = f"detected {f.detected} ({f.confidence:.2f})" if f.detected else "not detected"
        console.print(f"  {escape(str(f.path))}: {f.items} items, language {f.language} ({f.source}; {detected})")
    for warning in result.warnings:
        err_console.print(f"[yellow]warning: {escape(warning)}[/]")
    items = result.items
    count = repo.save_suite(
        _db(), name=name, format=format, items=items, sources=[p.name for p in paths], replace=replace
    )
    groups = len({i.group for i in items})
    pairs = f", {result.translated} ids in translation" if result.translated else ""
    console.print(
        f"Imported {count} items ({groups} groups; languages {', '.join(result.languages)}{pairs}) "
        f"from {len(paths)} file(s) as suite {escape(name)}."
    )


@suites_app.command("list")
def suites_list() -> None:
    """Built-in and imported suites."""
    from haven.audit import repository as repo
    from haven.audit.suites import BUILTIN_SUITES, load_builtin

    table = Table("NAME", "VERSION", "SOURCE", "ITEMS", "GROUPS", "LANGUAGES", box=None, pad_edge=False)
    for name in BUILTIN_SUITES:
        s = load_builtin(name)
        table.add_row(name, s.version, "built-in", str(len(s.items)), str(len(s.groups)), ",".join(s.languages))
    for summary in repo.list_suites(_db()):
        table.add_row(
            escape(summary.name),
            summary.version,
            f"imported ({summary.format})",
            str(summary.items),
            "",
            ",".join(summary.languages),
        )
    console.print(table)


@suites_app.command("show")
def suites_show(
    name: str,
    language: Annotated[str | None, typer.Option("--language", "-l", help="Only this language.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Items to print.")] = 20,
) -> None:
    """A suite's description, groups, templates and first items."""
    from haven.audit.suites import filter_languages, load_suite

    suite = load_suite(name, _db())
    items = filter_languages(suite, [language] if language else None)
    console.print(f"[bold]{escape(suite.name)}[/] {suite.version} — {len(suite.items)} items")
    if suite.description:
        console.print(escape(suite.description))
    console.print(f"languages: {', '.join(suite.languages)}")
    for lang, prov in suite.provenance.items():
        console.print(
            f"  {lang}: {escape(str(prov.get('source')))}, reviewed: {'yes' if prov.get('reviewed') else 'no'}"
        )
    console.print(f"groups ({len(suite.groups)}): {escape(', '.join(suite.groups))}", soft_wrap=True)
    templates = sorted({i.template_id for i in items})
    console.print(f"templates: {len(templates)}")
    for item in items[:limit]:
        # plain lines, not a table: prompts must stay whole however narrow the terminal
        console.print(
            f"[bold]{escape(item.item_id)}[/]  group={escape(item.group)} lang={item.language}", soft_wrap=True
        )
        console.print(f"  {escape(item.prompt)}", soft_wrap=True)


# --- runs ---------------------------------------------------------------------------------


def audit_run(
    target: Annotated[str | None, typer.Option("--target", help="A model served by the local Haven.")] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="Any OpenAI-compatible base URL.")] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model name at --endpoint (default: first listed).")
    ] = None,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="Env var holding the endpoint's API key.")
    ] = None,
    suite: Annotated[
        str, typer.Option("--suite", "-s", help="Suite name (`haven audit suites list`).")
    ] = "paired-countries",
    languages: Annotated[str | None, typer.Option("--languages", help="Comma-separated, e.g. en,zh-Hans.")] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, max=100, help="Answers per item.")] = 1,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=512, help="Requests in flight.")] = 4,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, max=2.0)] = 0.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, max=32768)] = 512,
    judge: Annotated[str, typer.Option("--judge", help="heuristic, or a judge model served by Haven.")] = "heuristic",
    judge_endpoint: Annotated[str | None, typer.Option("--judge-endpoint", help="OpenAI-compatible judge URL.")] = None,
    judge_api_key_env: Annotated[str | None, typer.Option("--judge-api-key-env")] = None,
    judge_samples: Annotated[int, typer.Option("--judge-samples", min=1, max=15, help="k for the vote.")] = 1,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue this run id (or latest).")] = None,
    rerun: Annotated[
        str | None,
        typer.Option("--rerun", help="Run a stored run's configuration again as a new run (seeds included)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Base of the fixed per-item, per-sample seeds.")] = 0,
    retries: Annotated[int, typer.Option("--retries", min=0, max=20, help="Retries per request.")] = 3,
) -> None:
    """Send a suite to a model, score every answer, store everything; prints the run id.

    Requests carry a fixed seed per item and sample and ``cache_prompt: false`` (no KV prefix reuse), so
    ``--rerun RUN`` against the same Haven-served model reproduces the run's answers and labels.
    """
    from haven.audit.runner import Progress as RunProgress
    from haven.audit.runner import RunRequest, run_audit

    if resume is not None and rerun is not None:
        raise AuditError("Give --resume RUN (continue it) or --rerun RUN (repeat it), not both.")
    stored = resume if resume is not None else rerun
    if stored is None and bool(target) == bool(endpoint):
        raise AuditError("Give exactly one of --target MODEL (served by Haven) or --endpoint URL.")
    db = _db()
    hint = ""
    judge_spec = None
    if stored is not None and not (target or endpoint):
        from haven.audit import repository as repo

        previous = repo.resolve_run(db, stored)
        endpoint, model, suite = previous.endpoint, previous.model, previous.suite
        samples = previous.samples
        languages = ",".join(previous.languages)
        sampling = {k: v for k, v in previous.sampling.items() if k != "rejected_by_endpoint"}
        seed = int(sampling.get("seed_base", seed))
        if rerun is not None:
            judge_spec = _stored_judge(previous.judge, judge_api_key_env)
    else:
        sampling = {"temperature": temperature, "max_tokens": max_tokens}
    if target:
        endpoint, model = _haven_base(), target
        hint = "Is Haven running? Start it with `haven serve`."
    assert endpoint is not None
    from haven.egress.policy import url_leaves_machine

    # A Haven-served target needs nothing here: Haven masks what it forwards to a remote upstream itself.
    external = not target and url_leaves_machine(endpoint)
    req = RunRequest(
        suite=suite,
        endpoint=endpoint,
        model=model,
        target=target or model,
        api_key=_api_key(api_key_env, "--api-key-env"),
        languages=_languages(languages),
        samples=samples,
        concurrency=concurrency,
        sampling=sampling,
        judge=_external_judge(judge_spec or _judge_spec(judge, judge_endpoint, judge_api_key_env, judge_samples), db),
        redaction=_outbound_redaction(db, "audit target") if external else None,
        resume=resume,
        seed=seed,
        require_listed=bool(target),
        unreachable_hint=hint,
        max_retries=retries,
    )
    columns = (
        TextColumn("[bold]run {task.fields[run]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("errors {task.fields[errors]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    bar = Progress(*columns, console=err_console, transient=False)
    task = bar.add_task("audit", total=None, run="…", errors=0)

    def on_progress(p: RunProgress) -> None:
        # The bar starts with the first progress report, so a bad option or dead endpoint prints only its error.
        if not bar.live.is_started:
            bar.start()
        bar.update(task, total=p.total, completed=p.done, run=p.run_id, errors=p.transport_errors)

    try:
        result = asyncio.run(run_audit(db, req, on_progress))
    finally:
        bar.stop()
    run = result.run
    if result.resumed:
        err_console.print(f"Resumed run {run.id}: asked {result.attempted} missing answers.")
    if result.transport_errors:
        err_console.print(
            f"[yellow]{result.transport_errors} requests failed after retries; they count as transport errors, "
            f"not refusals. `haven audit run --resume {run.id}` retries them.[/]"
        )
    console.print(f"run {run.id}")


def audit_runs(limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 20) -> None:
    """List audit runs, newest first."""
    from haven.audit import repository as repo

    table = Table(box=None, pad_edge=False)
    for name in ("ID", "STATUS", "TARGET", "SUITE", "LANGUAGES", "DONE", "JUDGE", "CREATED"):
        table.add_column(name, overflow="fold")
    for run in repo.list_runs(_db(), limit):
        table.add_row(
            str(run.id),
            run.status,
            escape(run.target),
            escape(run.suite),
            ",".join(run.languages),
            f"{run.responses}/{run.item_count}",
            escape(str(run.judge.get("judge", ""))),
            run.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


def audit_report(
    run: Annotated[str, typer.Argument(help="Run id or latest.")] = "latest",
    format: Annotated[str, typer.Option("--format", "-f", help="html|json|csv")] = "html",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write (default: stdout).")] = None,
    calibration: Annotated[
        Path | None, typer.Option("--calibration", help="JSON from `haven audit calibrate --out` for the judge.")
    ] = None,
) -> None:
    """Write a run's report: self-contained HTML, versioned JSON, or CSV."""
    if format not in ("html", "json", "csv"):
        raise AuditError(f"Unknown report format {format!r}; use html, json or csv.")
    from haven.audit.stored import build_report

    cal = json.loads(calibration.read_text(encoding="utf-8")) if calibration else None
    report = build_report(_db(), run, cal)
    if format == "json":
        text = json.dumps(report, ensure_ascii=False, indent=2)
    elif format == "csv":
        from haven.audit.report_csv import render_csv

        text = render_csv(report)
    else:
        from haven.audit.report_html import render_html

        text = render_html(report)
    _emit(text, out)


def _emit(text: str, out: Path | None) -> None:
    """Print ``text``, or write it to ``out`` and say so on stderr."""
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text, encoding="utf-8")
        err_console.print(f"Wrote {out}")


def audit_compare(
    run_a: Annotated[str, typer.Argument(help="Run id (or latest).")],
    run_b: Annotated[str, typer.Argument(help="Run id (or latest).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the comparison JSON here.")] = None,
) -> None:
    """Compare two runs (e.g. two models on the same suite)."""
    from haven.audit.stored import compare_runs

    result = compare_runs(_db(), run_a, run_b)
    text = json.dumps(result, ensure_ascii=False, indent=2)
    _emit(text, out)


def audit_calibrate(
    judge: Annotated[str, typer.Option("--judge", help="heuristic, or a judge model served by Haven.")] = "heuristic",
    judge_endpoint: Annotated[str | None, typer.Option("--judge-endpoint")] = None,
    judge_api_key_env: Annotated[str | None, typer.Option("--judge-api-key-env")] = None,
    judge_samples: Annotated[int, typer.Option("--judge-samples", min=1, max=15)] = 1,
    language: Annotated[str | None, typer.Option("--language", "-l")] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, max=70, help="Only this many answers per language and gold class (quick)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the result JSON (for `report --calibration`).")
    ] = None,
) -> None:
    """Score the judge against the shipped labelled set: accuracy per class, Cohen's κ, parse failures."""
    from haven.audit.calibration import calibrate
    from haven.audit.metrics import JUDGE_FAILURE_WARN
    from haven.audit.scoring import build_scorer

    spec = _judge_spec(judge, judge_endpoint, judge_api_key_env, judge_samples)
    result = calibrate(build_scorer(spec), language, per_cell=limit)
    console.print(
        f"judge {escape(result.judge)}: n={result.n} accuracy={result.accuracy:.3f} κ={result.kappa:.3f}"
        f" unscored={result.unscored} parse failures={result.parse_errors} judge refusals={result.judge_refused}"
    )
    if result.parse_failure_rate >= JUDGE_FAILURE_WARN:
        err_console.print(
            f"[yellow]warning: the judge gave no usable label for {result.parse_failure_rate:.0%} of the set: "
            "it cannot follow the answer format; its labels are not trustworthy.[/]"
        )
    table = Table("GOLD CLASS", "RECALL", box=None, pad_edge=False)
    for label, value in result.per_class.items():
        table.add_row(label, f"{value:.3f}")
    console.print(table)
    if result.per_language:
        console.print("per language: " + ", ".join(f"{k} {v:.3f}" for k, v in result.per_language.items()))
    if out is not None:
        out.write_text(json.dumps(result.as_dict(), ensure_ascii=False, indent=2), encoding="utf-8")


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Bias and censorship audit of any model.", no_args_is_help=True)
    sub.add_typer(suites_app, name="suites")
    sub.command("run")(audit_run)
    sub.command("runs")(audit_runs)
    sub.command("report")(audit_report)
    sub.command("compare")(audit_compare)
    sub.command("calibrate")(audit_calibrate)
    app.add_typer(sub, name="audit")
