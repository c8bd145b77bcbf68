"""Serves the web chat UI (``haven/web/``) from the same app: ``/`` is the page, ``/ui/...`` its assets.

Everything the browser loads comes from this origin: the page's Content-Security-Policy allows scripts,
styles, fonts and connections to ``'self'`` only, with no inline script and no ``eval``, so a model's
output that slipped past the sanitiser still could not run code or fetch anything from another host.
Assets are an allowlist of static file types under ``haven/web/`` (never its Python files), resolved
inside that directory only, gzip-compressed when the browser accepts it (the UI must stay light on a
slow link), and revalidated on each load (``no-cache`` + ETag) so an upgrade never mixes old and new files.
The UI uses hash routes (``/#/chat/<id>``), so the server needs no catch-all route.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

import haven.web
from haven.errors import NotFoundError

WEB_ROOT = Path(haven.web.__file__).resolve().parent
ASSET_PREFIX = "/ui/"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        # data: for the few CSS-drawn icons; never another host (model output cannot load images).
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        # Audit HTML reports open in a sandboxed frame of this origin.
        "frame-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
    ".webmanifest": "application/manifest+json",
}
# Already compressed: gzip would only cost CPU.
INCOMPRESSIBLE = {".woff2", ".png"}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str


@lru_cache(maxsize=512)
def _load(path: Path, mtime_ns: int) -> Asset:
    """One file read, hashed and compressed once per version (the mtime is part of the cache key)."""
    body = path.read_bytes()
    gzipped = None if path.suffix in INCOMPRESSIBLE else gzip.compress(body, compresslevel=9, mtime=0)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, gzipped, MEDIA_TYPES[path.suffix], etag)


def resolve_asset(relative: str) -> Path:
    """The file under ``haven/web/`` that ``relative`` names; NotFoundError for anything else."""
    if "\\" in relative or "\x00" in relative:
        raise NotFoundError("no such file.")
    candidate = (WEB_ROOT / relative).resolve()
    if (
        not candidate.is_relative_to(WEB_ROOT)
        or candidate.suffix not in MEDIA_TYPES
        or any(part.startswith((".", "_")) for part in candidate.relative_to(WEB_ROOT).parts)
        or not candidate.is_file()
    ):
        raise NotFoundError("no such file.")
    return candidate


def asset_response(request: Request, path: Path) -> Response:
    asset = _load(path, path.stat().st_mtime_ns)
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding", **SECURITY_HEADERS}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(status_code=200, headers=headers, media_type=asset.media_type)
    return Response(body, headers=headers, media_type=asset.media_type)


def index_response(request: Request) -> Response:
    """The UI's page. ``/`` is shared with Ollama's liveness text: the app factory serves this to browsers
    (``Accept: text/html``) and "Ollama is running" to every other client."""
    return asset_response(request, WEB_ROOT / "index.html")


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


@router.api_route(ASSET_PREFIX + "{relative:path}", methods=["GET", "HEAD"])
async def asset(relative: str, request: Request) -> Response:
    return asset_response(request, resolve_asset(relative))


def install_web_ui(app: FastAPI) -> None:
    """Adds the UI's routes to ``app`` (called by the app factory)."""
    app.include_router(router)
