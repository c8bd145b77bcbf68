"""``haven models …``: import, list, show, rm, pull and verify models in the local store.

Thin layer over :class:`haven.models.store.ModelStore` and :func:`haven.models.pull.pull`: parse
options, show Rich progress bars and tables. Errors are HavenError subclasses, printed as one line
by :mod:`haven.cli.main`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from haven.settings import get_settings

console = Console(highlight=False, emoji=False)  # emoji=False: "tiny:one:" must not become an emoji


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def human_count(count: int) -> str:
    """494032768 → 494M, 7615616512 → 7.6B, 156224 → 156K (Ollama's style)."""
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= limit:
            value = count / limit
            return f"{value:.1f}{suffix}" if value < 10 else f"{value:.0f}{suffix}"
    return str(count)


def _store() -> Any:
    from haven.models.store import ModelStore

    return ModelStore.from_settings(get_settings())


@contextmanager
def _bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A Rich byte progress bar; yields ``update(done, total)``."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    err = Console(stderr=True)
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task: TaskID = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _print_defaults(defaults: Any) -> None:
    """The model's request defaults, as ``haven models show`` and ``haven models set`` print them."""
    console.print("\n[bold]defaults[/] (applied to requests that do not set them)")
    if defaults.empty:
        console.print("  (none)")
        return
    if defaults.system is not None:
        console.print(f"  system = {json.dumps(defaults.system, ensure_ascii=False)}", soft_wrap=True, markup=False)
    for stop in defaults.stop:
        console.print(f"  stop = {json.dumps(stop, ensure_ascii=False)}", soft_wrap=True, markup=False)
    for key, value in sorted(defaults.parameters.items()):
        console.print(f"  {key} = {value}", soft_wrap=True, markup=False)
    if defaults.template is not None:
        console.print(f"  template = ({len(defaults.template):,} characters)", soft_wrap=True, markup=False)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Manage the local model store (import, pull, list, show, set, rm, verify).", no_args_is_help=True
    )
    app.add_typer(sub, name="models")

    @sub.command("import")
    def import_(
        path: Path = typer.Argument(..., help="GGUF file to import."),
        name: str = typer.Option(None, "--name", "-n", help="Model name[:tag] (default: from the file name)."),
        link: bool = typer.Option(False, "--link", help="Hard-link instead of copying when on the same filesystem."),
        allow_unsafe_template: bool = typer.Option(
            False,
            "--allow-unsafe-template",
            help="Accept a chat template that fails the safety scan (still sandboxed).",
        ),
    ) -> None:
        """Validate a GGUF file, hash it and add it to the store."""
        allow = allow_unsafe_template or get_settings().allow_unsafe_templates
        with _bar(f"importing {path.name}") as update:
            manifest = _store().import_file(path, name, allow_unsafe_template=allow, link=link, progress=update)
        console.print(
            f"imported {manifest.name} ({human_size(manifest.size)}, {manifest.architecture}, "
            f"{human_count(manifest.parameter_count)} parameters, {manifest.quantization}) "
            f"sha256:{manifest.sha256[:12]}",
            soft_wrap=True,
        )
        if not manifest.template_safe:
            console.print(f"warning: unsafe chat template accepted: {manifest.template_warning}", soft_wrap=True)

    @sub.command("list")
    def list_() -> None:
        """List the models in the store."""
        manifests = _store().list()
        if not manifests:
            console.print(
                "no models yet: `haven models import PATH` or `haven models pull hf://OWNER/REPO/FILE.gguf`",
                soft_wrap=True,
            )
            return
        table = Table(box=None, pad_edge=False, header_style="bold")  # plain columns, like `ollama list`
        for column in ("NAME", "SIZE", "ARCHITECTURE", "PARAMETERS", "QUANTIZATION", "CONTEXT", "MODIFIED"):
            table.add_column(column, no_wrap=True)
        for m in manifests:
            table.add_row(
                m.name,
                human_size(m.size),
                m.architecture,
                human_count(m.parameter_count),
                m.quantization,
                str(m.context_length or "-"),
                m.modified.astimezone().strftime("%Y-%m-%d %H:%M"),
            )
        # Piped output has no terminal width: never truncate columns there (scripts parse it).
        out = console if console.is_terminal else Console(highlight=False, emoji=False, width=1000)
        out.print(table)

    @sub.command("show")
    def show(
        name: str = typer.Argument(..., help="Model name[:tag]."),
        as_json: bool = typer.Option(False, "--json", help="Print the whole manifest as JSON."),
    ) -> None:
        """Show a model's metadata, chat template, sha256 and special tokens."""
        manifest = _store().get(name)
        if as_json:
            typer.echo(manifest.to_json(), nl=False)
            return
        rows: list[tuple[str, str]] = [
            ("name", manifest.name),
            ("sha256", manifest.sha256),
            ("size", f"{human_size(manifest.size)} ({manifest.size:,} bytes)"),
            ("architecture", manifest.architecture),
            ("parameters", f"{human_count(manifest.parameter_count)} ({manifest.parameter_count:,})"),
            ("quantization", manifest.quantization),
            ("context length", str(manifest.context_length)),
            ("embedding length", str(manifest.embedding_length)),
            ("bos token", f"{manifest.bos_token!r} ({manifest.bos_token_id})"),
            ("eos token", f"{manifest.eos_token!r} ({manifest.eos_token_id})"),
            ("source", manifest.source),
            ("modified", manifest.modified.astimezone().isoformat(timespec="seconds")),
            ("template", "safe" if manifest.template_safe else f"UNSAFE ({manifest.template_warning})"),
        ]
        for key, value in rows:
            console.print(f"[bold]{key:>17}[/]  {escape(value)}", soft_wrap=True)
        _print_defaults(manifest.defaults)
        console.print("\n[bold]special tokens[/]")
        for token, token_id in sorted(manifest.special_tokens.items(), key=lambda kv: kv[1]):
            console.print(f"  {token_id:>8}  {token}", soft_wrap=True, markup=False)
        console.print("\n[bold]metadata[/]")
        for key, value in sorted(manifest.metadata.items()):
            if key == "tokenizer.chat_template":
                continue
            shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
            console.print(f"  {key} = {shown}", soft_wrap=True, markup=False)
        console.print("\n[bold]chat template[/]")
        console.print(manifest.chat_template or "(none: Haven uses its ChatML fallback)", soft_wrap=True, markup=False)

    @sub.command("set")
    def set_(
        name: str = typer.Argument(..., help="Model name[:tag]."),
        system: str = typer.Option(None, "--system", help="Default system prompt (used when a request has none)."),
        params: list[str] = typer.Option(
            [], "--param", help="NAME=VALUE sampling default, e.g. temperature=0.6 (repeatable; Ollama option names)."
        ),
        stops: list[str] = typer.Option([], "--stop", help="Stop string added to every request (repeatable)."),
        unset: list[str] = typer.Option(
            [], "--unset", help="Remove a default: system, stop, template or a parameter name (repeatable)."
        ),
        reset: bool = typer.Option(False, "--reset", help="Remove every default before applying the others."),
    ) -> None:
        """Set a model's request defaults (system prompt, stop strings, sampling parameters)."""
        from haven.models.defaults_edit import edit_defaults

        store = _store()
        current = store.get(name)
        updated = edit_defaults(current.defaults, system=system, params=params, stops=stops, unset=unset, reset=reset)
        manifest = store.set_defaults(name, updated)
        console.print(f"updated the defaults of {manifest.name}", soft_wrap=True)
        _print_defaults(manifest.defaults)

    @sub.command("rm")
    def rm(name: str = typer.Argument(..., help="Model name[:tag].")) -> None:
        """Remove a model (its blob too, unless another model shares it)."""
        store = _store()
        manifest = store.get(name)
        store.remove(name)
        console.print(f"removed {manifest.name}", soft_wrap=True)

    @sub.command("pull")
    def pull_cmd(
        ref: str = typer.Argument(
            ...,
            help="An Ollama name (qwen2.5:0.5b, user/model:tag), hf://OWNER/REPO/FILE.gguf[@REV] "
            "or hf.co/OWNER/REPO[:QUANT]",
        ),
        name: str = typer.Option(None, "--name", "-n", help="Model name[:tag] (default: from the reference)."),
        allow_unsafe_template: bool = typer.Option(
            False,
            "--allow-unsafe-template",
            help="Accept a chat template that fails the safety scan (still sandboxed).",
        ),
    ) -> None:
        """Download a model by Ollama name or from the Hugging Face hub (resumable, sha256-checked).

        Ctrl-C stops the pull and keeps what was downloaded: the same command resumes it.
        """
        from haven.models.pull import pull

        settings = get_settings()
        received = [0, 0]
        try:
            with _bar("pulling") as update:

                def progress(status: str, completed: int | None = None, total: int | None = None, **_: Any) -> None:
                    if total:
                        received[:] = [completed or 0, total]
                        update(completed or 0, total)
                    elif status.startswith("ignoring"):
                        console.print(status, soft_wrap=True, markup=False)

                allow = allow_unsafe_template or settings.allow_unsafe_templates
                manifest = pull(_store(), ref, settings, progress, name=name, allow_unsafe_template=allow)
        except KeyboardInterrupt:
            done, total = received
            at = f" at {done:,} of {total:,} bytes" if total else ""
            Console(stderr=True, highlight=False).print(
                f"pull interrupted{at}; what was downloaded is kept: run the same command again to resume",
                soft_wrap=True,
            )
            raise typer.Exit(130) from None
        console.print(
            f"pulled {manifest.name} ({human_size(manifest.size)}, {manifest.architecture}, "
            f"{manifest.quantization}) sha256:{manifest.sha256[:12]}",
            soft_wrap=True,
        )

    @sub.command("verify")
    def verify(name: str = typer.Argument(..., help="Model name[:tag].")) -> None:
        """Re-hash a model's blob and compare it with its manifest."""
        store = _store()
        manifest = store.get(name)
        with _bar(f"verifying {manifest.name}"):
            ok = store.verify(name)
        if not ok:
            from haven.errors import StoreError

            raise StoreError(
                f"{manifest.name} is damaged: its blob is missing or no longer has sha256 {manifest.sha256[:12]}…; "
                f"remove it with `haven models rm {manifest.name}` and import or pull it again"
            )
        console.print(f"{manifest.name}: ok (sha256:{manifest.sha256[:12]})", soft_wrap=True)
