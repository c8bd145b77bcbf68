"""Regenerates docs/screenshots/: each main screen of the web UI, desktop and phone, light and dark, and RTL.

Run: ``.venv/bin/python scripts/screenshots.py`` (needs Debian's chromium and the dev extras). It starts a
real ``haven serve`` on a free loopback port with a tiny random-weight model from the factory, creates the
admin account, stores two demo bias-audit runs and one conversation whose answer shows Markdown, code, LaTeX
and a Thinking panel (the random model's own words would be gibberish), and photographs each screen with
Playwright.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from haven.models.factory import make_model  # noqa: E402
from haven.storage.db import open_database  # noqa: E402
from tests.e2e.conftest import start_haven_server  # noqa: E402
from tests.support.audit_demo import store_demo_runs  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
ADMIN, PASSWORD = "amina", "kiwi lantern 2026 orbit"
QUESTION = "How do I compute the area of a circle in Python?"
ANSWER = """The area of a circle of radius $r$ is

$$A = \\pi r^2$$

In Python:

```python
import math

def circle_area(r: float) -> float:
    return math.pi * r ** 2

print(circle_area(2))  # 12.566...
```

- **`math.pi`** holds π to double precision.
- For many radii at once, use NumPy: `np.pi * radii ** 2`.
"""
REASONING = "The user wants the formula and a short function. A = πr². Mention math.pi; keep it brief."
SCREENS = [  # file stem, hash route, width, height, theme, language
    ("first-run", "#/setup", 1280, 800, "light", "en"),
    ("login", "#/login", 1280, 800, "light", "en"),
    ("chat-desktop-light", "#/c/{id}", 1280, 800, "light", "en"),
    ("chat-desktop-dark", "#/c/{id}", 1280, 800, "dark", "en"),
    ("chat-phone-light", "#/c/{id}", 390, 844, "light", "en"),
    ("chat-phone-dark", "#/c/{id}", 390, 844, "dark", "en"),
    ("chat-rtl-arabic", "#/c/{id}", 1280, 800, "light", "ar"),
    ("settings", "#/settings", 1280, 800, "light", "en"),
    ("settings-phone-dark", "#/settings", 390, 844, "dark", "en"),
    ("admin-users", "#/admin/users", 1280, 800, "light", "en"),
    ("admin-models", "#/admin/models", 1280, 800, "dark", "en"),
    ("admin-security-log", "#/admin/security", 1280, 800, "light", "en"),
    ("admin-audit", "#/admin/audit", 1280, 800, "light", "en"),
]


def seed(url: str) -> str:
    with httpx.Client(base_url=url, timeout=30) as api:
        r = api.post("/api/v1/auth/setup", json={"name": ADMIN, "password": PASSWORD})
        r.raise_for_status()
        api.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        for title in ("Translate a letter to Swahili", "Lesson plan: fractions"):
            api.post("/api/v1/conversations", json={"title": title}).raise_for_status()
        conv = api.post("/api/v1/conversations", json={"title": "Area of a circle", "model": "tiny:latest"}).json()
        base = f"/api/v1/conversations/{conv['id']}/messages"
        api.post(base, json={"role": "user", "content": QUESTION}).raise_for_status()
        api.post(
            base, json={"role": "assistant", "content": ANSWER, "reasoning": REASONING, "model": "tiny:latest"}
        ).raise_for_status()
        return str(conv["id"])


def shoot(browser: Any, url: str, conversation: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for stem, route, width, height, theme, language in SCREENS:
        context = browser.new_context(viewport={"width": width, "height": height}, color_scheme=theme,
                                      device_scale_factor=1)
        page = context.new_page()
        page.add_init_script(f"localStorage.setItem('haven.language', '{language}')")
        if stem != "login":
            page.goto(url + "/#/login")
            page.locator("input[autocomplete=username]").fill(ADMIN)
            page.locator("input[type=password]").fill(PASSWORD)
            page.locator("form button[type=submit]").click()
            page.locator("textarea.composer-input").wait_for()
        page.goto(url + "/" + route.format(id=conversation))
        page.locator("main h1, .card h1").first.wait_for()
        if route == "#/admin/audit":  # two stored demo runs, compared
            page.locator("table.data input[type=checkbox]").nth(1).wait_for()
            for box in page.locator("table.data input[type=checkbox]").all()[:2]:
                box.check()
            page.locator("[aria-describedby=compare-hint]").click()
            page.locator("[data-testid=audit-comparison]").wait_for()
        if route.startswith("#/c/"):
            page.locator(".msg.assistant .katex").first.wait_for()
            page.locator("details.thinking summary").first.click()
        page.wait_for_timeout(600)
        page.screenshot(path=str(OUT / f"{stem}.png"))
        context.close()


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        model = make_model(Path(tmp) / "tiny.gguf", arch="qwen2", size="tiny", quant="f32", template="qwen2.5",
                           seed=0)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            # First run is photographed before the admin exists, on its own server.
            with start_haven_server(Path(tmp) / "fresh", {"tiny": model}, default_model="tiny") as url:
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()
                page.goto(url + "/")
                page.locator(".card h1").wait_for()
                page.wait_for_timeout(400)
                page.screenshot(path=str(OUT / "first-run.png"))
                context.close()
            with start_haven_server(Path(tmp) / "home", {"tiny": model}, default_model="tiny") as url:
                conversation = seed(url)
                db = open_database(f"sqlite:///{Path(tmp) / 'home' / 'haven.db'}")
                store_demo_runs(db)
                db.close()
                SCREENS[:] = [s for s in SCREENS if s[0] != "first-run"]
                shoot(browser, url, conversation)
            browser.close()
    print(f"wrote {len(list(OUT.glob('*.png')))} screenshots to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
