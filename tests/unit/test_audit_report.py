"""Report renderers: self-contained, escaped HTML; CSV rows; JSON valid against the schema."""

from __future__ import annotations

import csv
import io
import json
import re
from importlib import resources

import jsonschema

from haven.audit.metrics import compute_report
from haven.audit.records import Label
from haven.audit.report_csv import HEADER, render_csv
from haven.audit.report_html import render_html
from tests.support.audit_synthetic import synthetic_run

GROUPS = ["China", "France", "Iran"]
TEMPLATES = ["satire", "praise", "criticise", "wrongs"]
EVIL = '<script>alert("pwned")</script><img src="https://evil.example/x.png" onerror="x()">'


def _report(include_transcripts: bool = True) -> dict:
    items, responses, judgements = synthetic_run(
        GROUPS,
        TEMPLATES,
        ["en", "zh-Hans"],
        label=lambda g, t, lang: Label.DENIAL if g == "Iran" else Label.COMPLETE,
        valence=lambda g, t, lang: 1.0,
        content=lambda g, t, lang: EVIL if g == "France" else f"答案 about {g}",
    )
    return compute_report(
        {"id": "run-7", "target": "<b>model</b>", "suite": "paired-countries"},
        items,
        responses,
        judgements,
        include_transcripts=include_transcripts,
    )


def test_html_is_self_contained_and_escapes_model_output() -> None:
    page = render_html(_report())
    assert page.startswith("<!DOCTYPE html>")
    # Only our own inline script; the model's <script> and <img> are text.
    assert page.count("<script>") == 1
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    assert "<img" not in page and "<b>model</b>" not in page and "&lt;b&gt;model&lt;/b&gt;" in page
    # No network: no resource reference of any kind to http(s) (the escaped evil URL is inert text).
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?://", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    page_without_evil = render_html(compute_report({"id": "r"}, *synthetic_run(GROUPS, TEMPLATES)))
    assert "http://" not in page_without_evil and "https://" not in page_without_evil


def test_html_has_verdict_heatmap_bars_languages_and_filterable_transcripts() -> None:
    report = _report()
    page = render_html(report)
    assert report["verdict"]["summary"].replace('"', "&quot;").split("(")[0] in page
    assert '<table class="heat">' in page and "<svg" in page
    assert page.count('<details class="t"') == len(report["transcripts"]) == 24
    assert 'data-group="Iran" data-label="DENIAL" data-lang="zh-Hans"' in page
    assert '<select id="f-group">' in page and '<option value="Iran">Iran</option>' in page
    assert "<h2>Languages</h2>" in page and "zh-Hans" in page
    grid = page.split('<table class="heat lang">', 1)[1].split("</table>", 1)[0]
    assert grid.count("<tr>") == 4 and grid.count(">100%</td>") == 2  # Iran refused in both languages
    assert "答案 about China" in page  # UTF-8 kept as is
    assert "This report was generated without transcripts." in render_html(_report(include_transcripts=False))
    assert "less reliable" in page  # the heuristic judge's caveat is on the page


def test_an_empty_run_renders_and_gives_no_verdict() -> None:
    report = compute_report({"id": "empty"}, [], [], [])
    assert report["verdict"]["flagged"] is False
    assert report["verdict"]["summary"].startswith("No verdict: 0 scored answers")
    assert "No scored answers." in render_html(report)
    assert render_csv(report).splitlines()[1] == "spread,,,,chi2,0.0,0,,,1.0,1.0,False"


def test_json_report_round_trips_and_validates() -> None:
    report = _report()
    text = json.dumps(report, ensure_ascii=False)
    schema = json.loads(resources.files("haven.audit").joinpath("report_schema.json").read_text())
    jsonschema.validate(json.loads(text), schema)
    broken = json.loads(text)
    broken["groups"][0]["broad"]["rate"] = 1.5
    try:
        jsonschema.validate(broken, schema)
    except jsonschema.ValidationError as exc:
        assert "1.5" in exc.message
    else:  # pragma: no cover - the schema must reject rates above 1
        raise AssertionError("schema accepted a rate of 1.5")


def test_csv_rows_per_group_metric_and_transcripts() -> None:
    report = _report()
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert list(rows[0].keys()) == HEADER
    iran = {r["metric"]: r for r in rows if r["section"] == "group" and r["group"] == "Iran"}
    assert float(iran["strict_rate"]["value"]) == 1.0 and iran["strict_rate"]["n"] == "8"
    assert float(iran["valence_mean"]["value"]) == 1.0
    pair = next(r for r in rows if r["section"] == "group_pair" and {r["group"], r["other"]} == {"China", "Iran"})
    assert pair["metric"] == "delta_r" and pair["flagged"] in ("True", "False")
    assert any(r["section"] == "language_pair" and r["metric"] == "kappa" for r in rows)
    assert sum(1 for r in rows if r["section"] == "spread") == 1
    transcripts = [r for r in rows if r["section"] == "transcript"]
    assert len(transcripts) == 24 and {r["metric"] for r in transcripts} == {"COMPLETE", "DENIAL"}
    no_t = render_csv(_report(include_transcripts=False))
    assert "transcript" not in no_t
