"""``haven dev …``: developer commands — build random-weight test models, ensure the demo model.

* ``haven dev make-model`` writes a GGUF file with the test-model factory
  (:mod:`haven.models.factory`), with a progress bar.
* ``haven dev ensure-demo`` (run by ``make serve``) makes sure the configured default model
  exists; when that is the built-in demo name and the store lacks it, it builds the tiny
  demo model (qwen2, DeepSeek-R1 template so the reasoning split is visible) and imports it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from haven.errors import HavenError
from haven.models.factory import ARCHITECTURES, QUANTS, SIZES, TEMPLATES, make_model
from haven.settings import get_settings

DEMO_MODEL = "haven-demo:tiny"
DEMO_PULL_HINT = "haven models pull hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q8_0.gguf"

console = Console(highlight=False)


def _quiet_llama_cpp() -> None:
    # llama.cpp's quantizer logs every tensor; the progress bar says enough.
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[None]:
    """Send what C code writes to fd 2 (llama.cpp's quantizer warnings) to a temp file.

    On failure the captured text is printed, so nothing useful is lost; on success the
    per-tensor chatter ("ncols 64 not divisible by 256 … falling back") stays hidden.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            tail = sink.read()[-4000:].decode("utf-8", "replace")
            if tail.strip():
                sys.stderr.write(tail)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _build_with_progress(out: Path, *, arch: str, size: str, quant: str, template: str, seed: int) -> Path:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, fraction: float) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=1.0)
            bar.update(tasks[stage], completed=fraction)

        with _native_stderr_captured():
            return make_model(out, arch=arch, size=size, quant=quant, template=template, seed=seed, progress=report)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(help="Developer tools: random-weight test models, the demo model.", no_args_is_help=True)
    app.add_typer(sub, name="dev")

    @sub.command("make-model")
    def make_model_cmd(
        out: Path = typer.Option(..., "--out", help="Where to write the GGUF file.", dir_okay=False),
        arch: str = typer.Option("qwen2", "--arch", click_type=click.Choice(ARCHITECTURES), help="Architecture."),
        size: str = typer.Option(
            "tiny", "--size", click_type=click.Choice(SIZES), help="tiny (<1 MB) or 0.5b (Qwen2.5-0.5B shapes)."
        ),
        quant: str = typer.Option("f32", "--quant", click_type=click.Choice(QUANTS), help="File type."),
        template: str = typer.Option(
            "qwen2.5", "--template", click_type=click.Choice(TEMPLATES), help="Chat template and special tokens."
        ),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of the random weights (same seed, same file)."),
    ) -> None:
        """Write a GGUF model with random weights but real shapes, tokenizer and chat template."""
        _quiet_llama_cpp()
        started = time.perf_counter()
        path = _build_with_progress(out, arch=arch, size=size, quant=quant, template=template, seed=seed)
        elapsed = time.perf_counter() - started
        console.print(
            f"wrote {path} ({_human_size(path.stat().st_size)}; {arch} {size} {quant}, "
            f"{template} template, seed {seed}) in {elapsed:.1f} s",
            soft_wrap=True,
        )

    @sub.command("ensure-demo")
    def ensure_demo() -> None:
        """Make sure the default model exists; build and import the random-weight demo model if needed."""
        settings = get_settings()
        from haven.models.store import ModelStore  # the store pulls in hashing/IO code only when needed

        store = ModelStore.from_settings(settings)
        name = settings.default_model
        if store.exists(name):
            console.print(f"default model {name} is in the store", soft_wrap=True)
            return
        if name != DEMO_MODEL:
            raise HavenError(
                f"the default model {name} is not in the store; pull or import it "
                f"(e.g. `{DEMO_PULL_HINT}`), or unset HAVEN_DEFAULT_MODEL to use the demo model"
            )
        _quiet_llama_cpp()
        with tempfile.TemporaryDirectory(prefix="haven-demo-") as tmp:
            demo = Path(tmp) / "haven-demo-tiny.gguf"
            path = _build_with_progress(demo, arch="qwen2", size="tiny", quant="f32", template="deepseek-r1", seed=0)
            store.import_file(path, DEMO_MODEL)
        console.print(
            f"imported {DEMO_MODEL}: a tiny demo model with RANDOM weights, so its output is gibberish. "
            f"For real answers pull a model, e.g. `{DEMO_PULL_HINT}`, and set HAVEN_DEFAULT_MODEL to its name.",
            soft_wrap=True,
        )
