"""``/api/v1/admin/audit/…`` (admins only): the stored bias-audit runs, one run's HTML report, two runs compared.

The same reports as ``haven audit runs|report|compare`` (:mod:`haven.audit.stored`). The HTML report holds
model answers, so it is served as untrusted content: its own Content-Security-Policy forbids every script
but the report's own filter script (by hash), every request to anywhere, and makes the page a sandboxed,
opaque origin (``sandbox allow-scripts``: no cookies, no access to the UI or the API), framable by this
origin only. Reports are computed in FastAPI's thread pool (plain ``def`` routes), never on the event loop.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from haven.audit import repository as repo
from haven.audit.report_html import SCRIPT_CSP_HASH, render_html
from haven.audit.stored import build_report, compare_runs
from haven.conversations.store import iso
from haven.server.accounts.deps import context_of, require_admin

router = APIRouter(prefix="/audit", tags=["admin"])

RUN_REF = re.compile(r"^(\d{1,15}|latest)$")
REPORT_CSP = "; ".join(
    [
        "default-src 'none'",
        f"script-src '{SCRIPT_CSP_HASH}'",
        "style-src 'unsafe-inline'",  # the report's one <style> block; styles cannot run code
        "img-src data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'self'",
        "sandbox allow-scripts",
    ]
)
REPORT_HEADERS = {
    "Content-Security-Policy": REPORT_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "SAMEORIGIN",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _ref(value: str) -> str:
    """A run id (digits) or ``latest``; anything else is the audit's own 404 (never a 500 on a huge number)."""
    if not RUN_REF.match(value.strip().lower()):
        raise repo.RunNotFoundError(f"{value[:40]!r} is not a run id (a number from the runs list, or latest).")
    return value.strip().lower()


@router.get("/runs", summary="Stored bias-audit runs, newest first")
def list_runs(request: Request, limit: int = Query(default=50, ge=1, le=500)) -> dict[str, Any]:
    require_admin(request)
    runs = repo.list_runs(context_of(request).db, limit)
    return {
        "data": [
            {
                **run.as_dict(),
                # SQLite gives times back without a zone: say UTC, as every other /api/v1 time does.
                "created_at": iso(run.created_at),
                "finished_at": iso(run.finished_at) if run.finished_at else None,
                "responses": run.responses,
                "judgements": run.judgements,
            }
            for run in runs
        ]
    }


@router.get("/runs/{run_id}/report.html", summary="One run's self-contained HTML report (sandboxed)")
def run_report(run_id: str, request: Request) -> HTMLResponse:
    require_admin(request)
    report = build_report(context_of(request).db, _ref(run_id))
    return HTMLResponse(render_html(report), headers=REPORT_HEADERS)


@router.get("/compare", summary="Two runs side by side: per-group refusal rates and Fisher tests")
def compare(
    request: Request,
    a: str = Query(max_length=40, description="Run id (or latest)."),
    b: str = Query(max_length=40, description="Run id (or latest)."),
) -> dict[str, Any]:
    require_admin(request)
    return compare_runs(context_of(request).db, _ref(a), _ref(b))
