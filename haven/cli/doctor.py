"""``haven doctor``: one screen that proves this installation's posture (``--json`` for scripts).

Bind address and auth, key strength, egress mode and allowlist, any destination outside this machine (in
red: data leaves), database location, file permissions under HAVEN_HOME, every model's hash and template scan,
telemetry switches, versions. Each line says ok / warn / fail and how to fix it; exit code 1 on any fail.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from haven.settings import get_settings

console = Console(highlight=False, emoji=False)
STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor(
        as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
        quick: bool = typer.Option(False, "--quick", help="Do not re-hash model files (faster on large stores)."),
    ) -> None:
        """Check this installation's security and sovereignty posture, with a fix for every problem."""
        from haven.doctor import run_checks

        findings = run_checks(get_settings(), verify_hashes=not quick)
        if as_json:
            typer.echo(json.dumps({"findings": [f.to_dict() for f in findings],
                                   "ok": all(f.status != "fail" for f in findings)}, ensure_ascii=False, indent=2))
        else:
            table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
            for column in ("", "check", "finding", "fix"):
                table.add_column(column, overflow="fold")
            for f in findings:
                # "data leaves" lines are the ones an operator must never miss: always red.
                style = "bold red" if f.check == "data leaves" else STYLE[f.status]
                table.add_row(f"[{style}]{f.status}[/]", escape(f.check), f"[{style}]{escape(f.detail)}[/]",
                              escape(f.fix))
            console.print(table)
        if any(f.status == "fail" for f in findings):
            raise typer.Exit(1)
