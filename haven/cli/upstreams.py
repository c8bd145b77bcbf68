"""``haven upstreams list|add|remove|check``: the remote OpenAI-compatible servers Haven routes to.

The configuration lives in ``HAVEN_HOME/upstreams.yaml`` (:mod:`haven.chat.upstreams`); API keys are never
written there, only the name of the environment variable that holds each one. ``check`` asks every
upstream for its models (and load) and prints one readable line per upstream.
"""

from __future__ import annotations

import asyncio
import json

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from haven.settings import get_settings

console = Console(highlight=False, emoji=False)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Remote OpenAI-compatible upstreams (vLLM, SGLang, llama-server, other Havens).",
                        no_args_is_help=True)
    app.add_typer(group, name="upstreams")

    @group.command("list")
    def list_upstreams(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """The configured upstreams."""
        from haven.chat.upstreams import UpstreamsFile

        config = UpstreamsFile.load(get_settings().home)
        if as_json:
            typer.echo(json.dumps([u.to_dict() for u in config.upstreams], indent=2))
            return
        if not config.upstreams:
            console.print(f"no upstreams configured ({escape(str(config.path))})")
            return
        table = Table("name", "kind", "url", "models", "weight", "key from", box=None)
        for u in config.upstreams:
            table.add_row(u.name, u.kind, escape(u.url), escape(", ".join(u.models) or "(listed by the upstream)"),
                          f"{u.weight:g}", u.api_key_env or "—")
        console.print(table)

    @group.command("add")
    def add(
        name: str = typer.Argument(..., help="A short name: lower-case letters, digits, - and _."),
        url: str = typer.Option(..., "--url", help="The upstream's OpenAI API root, e.g. http://10.0.0.5:8000/v1"),
        kind: str = typer.Option("openai-compatible", "--kind",
                                 help="vllm, sglang, llama-server, haven or openai-compatible."),
        api_key_env: str = typer.Option(None, "--api-key-env", help="Environment variable holding its API key."),
        model: list[str] = typer.Option([], "--model", help="Pin a model it serves (repeatable); default: ask it."),
        weight: float = typer.Option(1.0, "--weight", help="Routing weight (a bigger box gets more requests)."),
        connect_timeout: float = typer.Option(3.0, "--connect-timeout", help="Seconds to connect."),
        read_timeout: float = typer.Option(120.0, "--read-timeout", help="Longest silence mid-answer, seconds."),
    ) -> None:
        """Add an upstream (written atomically to HAVEN_HOME/upstreams.yaml)."""
        from haven.chat.upstreams import Upstream, UpstreamsFile

        config = UpstreamsFile.load(get_settings().home)
        upstream = Upstream(name, url, kind=kind, api_key_env=api_key_env, models=tuple(model),  # type: ignore[arg-type]
                            weight=weight, connect_timeout=connect_timeout, read_timeout=read_timeout)
        config.add(upstream)
        config.save()
        console.print(f"added upstream {name} ({escape(url)})")

    @group.command("remove")
    def remove(name: str = typer.Argument(..., help="The upstream's name.")) -> None:
        """Remove an upstream."""
        from haven.chat.upstreams import UpstreamsFile

        config = UpstreamsFile.load(get_settings().home)
        config.remove(name)
        config.save()
        console.print(f"removed upstream {name}")

    @group.command("check")
    def check() -> None:
        """Reach every upstream: one line each (ok with its models, or what is wrong); exit 1 if any fails."""
        from haven.chat.routing import UpstreamPool
        from haven.chat.upstreams import UpstreamsFile

        config = UpstreamsFile.load(get_settings().home)
        if not config.upstreams:
            console.print("no upstreams configured")
            return

        async def run() -> dict[str, tuple[str | None, tuple[str, ...]]]:
            pool = UpstreamPool.build(config.upstreams)
            try:
                results = await pool.check_all()
                return {m.name: (results[m.name], tuple(c.name for c in m.backend.models())) for m in pool.members}
            finally:
                await pool.close()

        failed = False
        for name, (problem, models) in asyncio.run(run()).items():
            if problem is None:
                console.print(f"[green]ok[/]    {name}: {escape(', '.join(models) or 'no models')}", soft_wrap=True)
            else:
                failed = True
                console.print(f"[bold red]fail[/]  {name}: {escape(problem)}", soft_wrap=True)
        if failed:
            raise typer.Exit(1)
