"""The benchmark harness: ratios, pass/fail, the RESULTS.md table, module discovery."""

from __future__ import annotations

import sys
import types

import pytest

from benchmarks.harness import BenchContext, Result, ratio
from benchmarks.run import discover, render, run_module


def test_ratio_is_havens_advantage_in_both_directions() -> None:
    assert ratio(30.0, 20.0) == 1.5
    assert ratio(1.0, 10.0, higher_is_better=False) == 10.0


@pytest.mark.parametrize(
    ("result", "passed"),
    [
        (Result("tg", 26.0, 27.0, "llama-bench", "tok/s", 0.95), True),  # 0.963
        (Result("tg", 25.0, 27.0, "llama-bench", "tok/s", 0.95), False),  # 0.926
        (Result("ttft", 2.0, 11.0, "cold", "s", 5.0, higher_is_better=False), True),  # 5.5×
        (Result("ttft", 2.5, 11.0, "cold", "s", 5.0, higher_is_better=False), False),  # 4.4×
        (Result("py", 4.9, None, "", "%", None, higher_is_better=False, limit=5.0), True),
        (Result("py", 5.1, None, "", "%", None, higher_is_better=False, limit=5.0), False),
        (Result("tg", None, 27.0, "llama-bench", "tok/s", 0.95), None),  # not measured: no verdict
        (Result("info", 3.0, None, "", "×"), None),
    ],
)
def test_pass_fail_against_targets(result: Result, passed: bool | None) -> None:
    assert result.passed is passed


def test_render_writes_machine_and_one_row_per_result() -> None:
    text = render(
        {"cpu": "Test CPU"},
        12.5e9,
        {"bench_engine": [Result("decode", 25.0, 27.0, "llama-bench tg64", "tok/s", 0.95, notes="a|b")]},
        "--quick",
    )
    assert "- **cpu**: Test CPU" in text
    assert "12.5 GB/s" in text
    assert "| decode | 25.0 | llama-bench tg64 | 27.0 | tok/s | 0.93× | ≥ 0.95× | ❌ miss | a\\|b |" in text


def test_discover_finds_bench_modules_and_rejects_unknown_names() -> None:
    assert "bench_engine" in discover(None)
    assert discover("engine") == ["bench_engine"]
    with pytest.raises(SystemExit, match="no benchmark module named 'bench_nope'"):
        discover("nope")


def test_module_without_run_ctx_is_reported_not_called(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("benchmarks.bench_fake")
    module.run = lambda *, seconds=1.0: pytest.fail("must not be called")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks.bench_fake", module)
    ctx = BenchContext(quick=True, threads=1, machine={}, bandwidth_bytes_per_s=1e9)
    (row,) = run_module("bench_fake", ctx)
    assert row.passed is None and "no run(ctx)" in row.notes


def test_bandwidth_bound() -> None:
    ctx = BenchContext(quick=True, threads=1, machine={}, bandwidth_bytes_per_s=10e9)
    assert ctx.bandwidth_bound_tok_s(500_000_000) == 20.0


def test_update_replaces_only_the_rerun_sections() -> None:
    from benchmarks.run import update_sections

    head = "# Benchmark results\n\n## Machine\n\n- **date**: {}\n"
    previous = head.format("old") + "\n## bench_a\n\n| a old |\n\n## bench_b\n\n| b old |\n"
    fresh = head.format("new") + "\n## bench_b\n\n| b new |\n\n## bench_c\n\n| c new |\n"
    text = update_sections(previous, fresh, ["bench_b", "bench_c"], "rerun now")
    assert "- **date**: old" in text and "- **date**: new" not in text  # the full run's machine block stays
    assert "| a old |" in text and "| b old |" not in text
    assert text.index("## bench_a") < text.index("## bench_b") < text.index("## bench_c")
    assert text.count("_rerun now_") == 2 and "## bench_b\n\n_rerun now_\n\n| b new |" in text
