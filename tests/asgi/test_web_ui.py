"""The web UI's static serving: the page and its assets, the CSP and security headers, compression,
revalidation, and that nothing outside the allowlist of static files under haven/web/ is served."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from haven.server.web import CONTENT_SECURITY_POLICY, WEB_ROOT
from tests.asgi.openai_support import harness

CSP_DIRECTIVES = dict(
    (part.split(" ", 1)[0], part.split(" ", 1)[1]) for part in CONTENT_SECURITY_POLICY.split("; ")
)


def test_csp_has_no_inline_script_eval_or_other_host() -> None:
    assert CSP_DIRECTIVES["script-src"] == "'self'"
    assert CSP_DIRECTIVES["default-src"] == "'none'"
    assert CSP_DIRECTIVES["connect-src"] == "'self'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert "http" not in CONTENT_SECURITY_POLICY and "*" not in CONTENT_SECURITY_POLICY


async def test_index_is_served_with_security_headers(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        ollama_probe = await h.client.get("/")  # what the ollama clients and tools send: no text/html
    assert ollama_probe.text == "Ollama is running"
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"
    assert '<script type="module" src="/ui/js/app.js">' in r.text
    # No inline script in the page: every <script> has a src.
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", r.text))


async def test_assets_are_served_compressed_and_revalidated(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.get("/ui/js/app.js", headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
        assert r.headers["content-type"].startswith("text/javascript")
        assert r.content == (WEB_ROOT / "js/app.js").read_bytes()  # httpx decompressed it
        etag = r.headers["etag"]
        again = await h.client.get("/ui/js/app.js", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        font_url = "/ui/vendor/katex/fonts/KaTeX_Main-Regular.woff2"
        font = await h.client.get(font_url, headers={"Accept-Encoding": "gzip"})
        assert font.status_code == 200 and "content-encoding" not in font.headers
        assert font.headers["content-type"] == "font/woff2"
        catalogue = await h.client.get("/ui/i18n/ar.json")
        assert catalogue.status_code == 200 and catalogue.json()["nav.chat"]


@pytest.mark.parametrize(
    "path",
    [
        "/ui/__init__.py",
        "/ui/../server/web.py",
        "/ui/%2e%2e/server/web.py",
        "/ui/..%2f..%2fpyproject.toml",
        "/ui/vendor/MANIFEST.txt",
        "/ui/vendor/katex/LICENSE",
        "/ui/js/missing.js",
        "/ui/.hidden.js",
        "/ui/js",
    ],
)
async def test_only_static_files_under_web_are_served(tmp_path: Path, path: str) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.get(path)
    assert r.status_code == 404
    assert "error" in r.json()


async def test_unknown_api_paths_still_get_json_errors(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]


def _page_assets(index: str) -> list[str]:
    refs = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(/ui/[^"]+)"', index)
    return [ref for ref in refs if not ref.endswith(".svg")]


def _module_imports(path: Path) -> list[Path]:
    text = path.read_text(encoding="utf-8")
    found = re.findall(r'(?:^|\n|;)\s*import\s[^;]*?from\s*"([^"]+)"', text)
    found += re.findall(r'import\(\s*"([^"]+)"\s*\)', text)
    return [(path.parent / ref).resolve() for ref in found]


def test_chat_page_javascript_and_css_fit_300_kb_compressed() -> None:
    """Everything index.html loads (scripts, styles, and every ES module they import), gzip-compressed
    as the server sends it, is at most 300 KB: the UI must stay usable on a slow link and machine."""
    index = (WEB_ROOT / "index.html").read_text(encoding="utf-8")
    todo = [WEB_ROOT / ref.removeprefix("/ui/") for ref in _page_assets(index)]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        assert path.is_file(), f"{path} is loaded by the page but missing"
        seen.add(path)
        if path.suffix in (".js", ".mjs"):
            todo.extend(_module_imports(path))
    names = {p.relative_to(WEB_ROOT).as_posix() for p in seen}
    # The walk really followed the imports (the libraries come in through markdown.js).
    assert {"js/app.js", "js/views/chat.js", "vendor/marked/marked.esm.js", "vendor/dompurify/purify.es.mjs"} <= names
    total = sum(len(gzip.compress(p.read_bytes(), compresslevel=9)) for p in seen)
    assert total <= 300 * 1024, f"{total / 1024:.0f} KB compressed: {sorted(names)}"


async def test_the_page_and_its_files_are_open_once_users_exist_and_nothing_else_is(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        r = await h.client.post("/api/v1/auth/setup", json={"name": "admin", "password": "kiwi lantern 2026 orbit"})
        assert r.status_code == 201, r.text
        h.client.cookies.clear()
        assert (await h.client.get("/")).status_code == 200
        assert (await h.client.get("/ui/js/app.js")).status_code == 200
        assert (await h.client.get("/ui/i18n/ur.json")).status_code == 200
        assert (await h.client.get("/api/v1/conversations")).status_code == 401
        assert (await h.client.get("/v1/models")).status_code == 401
        # The open prefix is exactly /ui/: a look-alike path is not.
        assert (await h.client.get("/uix/../api/v1/conversations")).status_code in (401, 404)
