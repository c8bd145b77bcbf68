"""Browser-tier fixtures: one real ``haven serve`` per module and Debian's headless Chromium driven by the
``playwright`` package (``executable_path=/usr/bin/chromium``; no browser download).

Every page a test opens records each request it makes and every console message: :func:`open_page`'s
:class:`Page` wrapper fails the test on a request to any other origin than the server, on a
Content-Security-Policy violation and on an uncaught script error. :func:`axe_violations` injects the
vendored axe-core (tests/browser/vendor, written by scripts/vendor-web.sh) and returns the serious and
critical accessibility violations.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import HavenServer, start_haven_server

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
ADMIN = "admin"
PASSWORD = "kiwi lantern 2026 orbit"


@pytest.fixture(scope="module")
def web_server(
    make_test_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HavenServer]:
    models = {"tiny": make_test_model(), "r1": make_test_model(template="deepseek-r1")}
    home = tmp_path_factory.mktemp("haven-web")
    (home / "imports").mkdir()  # the admin page's "import from a server path" may read here only
    with start_haven_server(
        home, models, default_model="tiny", parallel=2, context_length=2048, model_import_dirs=home / "imports"
    ) as url:
        yield url


# Module, not session: sync Playwright runs an event loop in this thread while it is open, which would break
# every later test module that runs one of its own (asyncio.run, pytest-asyncio).
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.fail("Debian's chromium package is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium")),
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield browser
        browser.close()


@dataclass
class Watched:
    """A Playwright page plus what it did: requests, console messages, page errors, dialogs."""

    page: Any
    origin: str
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def check_clean(self) -> None:
        foreign = [u for u in self.requests if not u.startswith(self.origin + "/") and not u.startswith("data:")]
        assert foreign == [], f"requests to other hosts: {foreign}"
        csp = [m for m in self.console if "Content Security Policy" in m]
        assert csp == [], f"CSP violations: {csp}"
        assert self.errors == [], f"uncaught script errors: {self.errors}"
        assert self.dialogs == [], f"dialogs opened: {self.dialogs}"


@pytest.fixture
def open_page(chromium: Any, web_server: HavenServer) -> Iterator[Callable[..., Watched]]:
    contexts: list[Any] = []
    watched: list[Watched] = []

    def open_(width: int = 1280, height: int = 800, locale: str = "en-US", color_scheme: str = "light") -> Watched:
        context = chromium.new_context(
            viewport={"width": width, "height": height}, locale=locale, color_scheme=color_scheme
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        w = Watched(page, str(web_server))
        page.on("request", lambda r: w.requests.append(r.url))
        page.on("console", lambda m: w.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: w.errors.append(str(e)))

        def on_dialog(dialog: Any) -> None:
            w.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        watched.append(w)
        return w

    yield open_
    try:
        for w in watched:
            w.check_clean()
    finally:
        for context in contexts:
            context.close()


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    serious = [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["html"][:200] for n in v["nodes"][:5]]}
        for v in serious
    ]


def assert_accessible(page: Any, screen: str) -> None:
    violations = axe_violations(page)
    assert violations == [], f"{screen}: " + json.dumps(violations, indent=1)


def ensure_admin(origin: str) -> None:
    """Creates the admin over the API when a test runs without the first-run test before it."""
    status = httpx.get(origin + "/api/v1/auth/status", timeout=10).json()
    if status["setup_required"]:
        r = httpx.post(origin + "/api/v1/auth/setup", json={"name": ADMIN, "password": PASSWORD}, timeout=30)
        assert r.status_code == 201, r.text


def login(w: Watched, name: str = ADMIN, password: str = PASSWORD) -> None:
    ensure_admin(w.origin)
    page = w.page
    page.goto(w.origin + "/#/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("textbox", name="Message").wait_for()
