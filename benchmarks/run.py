"""Run Haven's benchmarks side by side with their peers and rewrite ``benchmarks/RESULTS.md``.

``python -m benchmarks.run [--quick] [--only NAME[,NAME…]] [--threads N] [--no-write | --update]``

Discovers every ``benchmarks/bench_*.py`` module that exposes ``run(ctx: BenchContext) ->
list[Result]`` (see ``benchmarks/README.md``), prints the machine's facts, runs them in name
order and writes one table of ratios with pass/fail against each target. A module that
fails is reported as a failed row with its error, and the others still run. ``--update`` reruns the named
modules and replaces only their sections of RESULTS.md (each rerun section says when, and under what load,
it was measured); the peers inside one section are always measured side by side in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
import traceback
from pathlib import Path

from benchmarks.harness import ROOT, BenchContext, Result, machine_info, measure_bandwidth, physical_cores

RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"


def discover(only: str | None) -> list[str]:
    names = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))
    if only:
        chosen = []
        for part in only.split(","):
            wanted = part.strip() if part.strip().startswith("bench_") else f"bench_{part.strip()}"
            if wanted not in names:
                raise SystemExit(f"no benchmark module named {wanted!r} in benchmarks/")
            chosen.append(wanted)
        names = sorted(set(chosen))
    return names


def update_sections(previous: str, fresh: str, rerun: list[str], note: str) -> str:
    """``previous`` RESULTS.md with the sections named in ``rerun`` taken from ``fresh`` (and a note under
    each saying when it was rerun); sections not rerun, and the machine block, are kept as they were."""

    def split(text: str) -> tuple[str, dict[str, str]]:
        head, *parts = text.split("\n## bench_")
        return head, {"bench_" + part.split("\n", 1)[0]: "## bench_" + part for part in parts}

    head, old = split(previous)
    _, new = split(fresh)
    for name in rerun:
        heading, _, table = new[name].partition("\n")
        old[name] = f"{heading}\n\n_{note}_\n{table}"
    return head + "".join("\n" + old[name].rstrip("\n") + "\n" for name in sorted(old))


def run_module(name: str, ctx: BenchContext) -> list[Result]:
    module = importlib.import_module(f"benchmarks.{name}")
    run = getattr(module, "run", None)
    params = list(inspect.signature(run).parameters.values()) if callable(run) else []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if run is None or not positional:
        return [
            Result(name, None, None, "", "", notes="module has no run(ctx) -> list[Result]; see benchmarks/README.md")
        ]
    results = run(ctx)
    return list(results)


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) >= 0.01 else f"{value:.2e}"


def verdict(result: Result) -> str:
    passed = result.passed
    return "" if passed is None else ("✅ pass" if passed else "❌ miss")


def render(machine: dict[str, str], bandwidth: float, sections: dict[str, list[Result]], args: str) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m benchmarks.run` (`make bench`); do not edit by hand. How to read it: "
        "`benchmarks/README.md`.",
        "",
        "## Machine",
        "",
        *(f"- **{k}**: {v}" for k, v in machine.items()),
        f"- **memory bandwidth (numpy copy, one thread)**: {bandwidth / 1e9:.1f} GB/s",
        f"- **command**: `python -m benchmarks.run {args}`".rstrip(),
        "",
    ]
    for module, results in sections.items():
        lines += [
            f"## {module}",
            "",
            "| benchmark | Haven | peer | peer value | unit | ratio | target | result | notes |",
            "|---|---:|---|---:|---|---:|---|---|---|",
        ]
        for r in results:
            ratio = "" if r.ratio is None else f"{r.ratio:.2f}×"
            notes = r.notes.replace("|", "\\|").replace("\n", " ")
            lines.append(
                f"| {r.name} | {fmt(r.haven)} | {r.peer_name} | {fmt(r.peer)} | {r.unit} | {ratio} "
                f"| {r.target_text} | {verdict(r)} | {notes} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Haven benchmarks vs llama.cpp peers")
    parser.add_argument("--quick", action="store_true", help="fewer tokens/streams (≤ 10 min on 2 cores)")
    parser.add_argument("--only", help="run one module, e.g. 'engine' or 'bench_engine'")
    parser.add_argument("--threads", type=int, default=physical_cores(), help="threads for Haven and every peer")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave RESULTS.md alone")
    parser.add_argument("--update", action="store_true", help="replace only the rerun modules' sections of RESULTS.md")
    args = parser.parse_args(argv)

    machine = machine_info()
    machine["threads"] = str(args.threads)
    machine["mode"] = "quick" if args.quick else "full"
    bandwidth = measure_bandwidth()
    for key, value in machine.items():
        print(f"{key:>24}: {value}", file=sys.stderr)
    print(f"{'memory bandwidth':>24}: {bandwidth / 1e9:.1f} GB/s", file=sys.stderr)
    ctx = BenchContext(quick=args.quick, threads=args.threads, machine=machine, bandwidth_bytes_per_s=bandwidth)

    sections: dict[str, list[Result]] = {}
    failed = False
    for name in discover(args.only):
        started = time.perf_counter()
        ctx.log(f"== {name}")
        try:
            sections[name] = run_module(name, ctx)
        except Exception as exc:  # one broken module must not hide the others' results
            traceback.print_exc()
            sections[name] = [Result(name, None, None, "", "", notes=f"failed: {type(exc).__name__}: {exc}")]
            failed = True
        ctx.log(f"== {name} done in {time.perf_counter() - started:.0f} s")

    cli = " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    text = render(machine, bandwidth, sections, cli)
    print(text)
    if args.update and not args.no_write and RESULTS_MD.exists():
        note = (
            f"Rerun {machine.get('date', '')} with `python -m benchmarks.run {cli}` "
            f"(load average at start {machine.get('load average at start', '?')}); the machine block above is "
            "the full run's."
        )
        text = update_sections(RESULTS_MD.read_text(), text, list(sections), note)
    if not args.no_write:
        RESULTS_MD.write_text(text + "\n")
        print(
            f"wrote {RESULTS_MD.relative_to(Path.cwd()) if RESULTS_MD.is_relative_to(Path.cwd()) else RESULTS_MD}",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
