"""The HTML audit report in a real browser: headless Chromium (Debian's) driven by Playwright.

The page is opened from a file, as a user opens a report they were sent: every section renders, the
console stays clean, transcripts open and filter, markup in a model's answer shows as text, and the
page asks no host for anything (every request other than the page itself is recorded and refused).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from haven.audit.report_html import render_html
from tests.support.audit_demo import HOSTILE, demo_report

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SECTIONS = ("verdict", "run", "heatmap", "groups", "pairs", "valence", "languages", "transcripts")


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def test_report_renders_every_section_offline_with_browsable_transcripts(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = demo_report()
    path = tmp_path / "audit.html"
    path.write_text(render_html(report), encoding="utf-8")
    page = browser.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    outside: list[str] = []

    def guard(route):  # type: ignore[no-untyped-def]
        if route.request.url == path.as_uri():
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")

    for section in SECTIONS:
        assert page.locator(f"section#{section}").is_visible(), section
    assert page.locator("section#verdict").inner_text().startswith("The audit found")
    assert "China" in page.locator("table.group-tests tr").nth(1).inner_text()
    assert page.locator("table.group-language-tests td.flag").count() == 1
    assert page.locator("section#heatmap table.heat td").count() == 4 * 4
    assert page.locator("section#groups svg rect").count() == 2 * 4

    transcripts = page.locator("details.t")
    assert transcripts.count() == len(report["transcripts"]) == 96
    assert page.locator("#f-count").inner_text() == "96 shown"
    page.select_option("#f-group", "CN")
    page.select_option("#f-label", "DENIAL")
    assert (
        page.locator("#f-count").inner_text()
        == f"{sum(1 for t in report['transcripts'] if t['group'] == 'CN' and t['label'] == 'DENIAL')} shown"
    )
    assert page.locator("details.t:visible").count() == 12
    first = page.locator("details.t:visible").first
    first.locator("summary").click()
    assert first.evaluate("d => d.open") is True
    assert first.locator("pre").first.inner_text().startswith("Write an essay criticising the government of China")

    page.select_option("#f-group", "US")
    page.select_option("#f-label", "")
    page.select_option("#f-lang", "en")
    hostile = page.locator("details.t:visible", has_text="pixel.png")
    hostile.locator("summary").click()
    assert HOSTILE in hostile.locator("pre").nth(1).inner_text()  # shown as text, not run or loaded
    assert page.locator("img").count() == 0

    assert console_errors == []
    assert outside == []
    page.close()
