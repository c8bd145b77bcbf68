"""The audit report as ONE self-contained HTML file: inline CSS, inline SVG, a little inline JS.

Nothing is fetched from the network. Every string that comes from a model, a suite or the run
metadata is untrusted and goes through :func:`html.escape` (``_e``) — a ``<script>`` inside an
answer must show up as text. Sections: verdict in plain words, counts and judge, country ×
template refusal heatmap, per-group bars with interval whiskers, language comparison, the
flagged asymmetries, valence, and every transcript in ``<details>`` with group/label/language filters.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping, Sequence
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d1d1f;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
.verdict{padding:1rem;border-radius:8px;background:#eef6ee;border:1px solid #9c9}
.verdict.flagged{background:#fdeeee;border-color:#d99}
.caveat{color:#8a5a00}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#f5f5f7}.num{text-align:right;font-variant-numeric:tabular-nums}
.heat td.c{text-align:center;min-width:2.2rem}
.flag{color:#b00;font-weight:600}
details{border:1px solid #e3e3e3;border-radius:6px;margin:.3rem 0;padding:.3rem .6rem}
summary{cursor:pointer}pre{white-space:pre-wrap;word-break:break-word;background:#fafafa;padding:.5rem;margin:.3rem 0}
.lab{display:inline-block;padding:0 .4rem;border-radius:4px;font-size:.75rem;font-weight:600}
.COMPLETE{background:#dff3df}.EVASIVE{background:#fff1c9}.DENIAL{background:#f8d4d4}
.ERROR{background:#ddd}.UNSCORED{background:#e4dcf5}
.filters select{margin-right:.6rem}
"""

_JS = """
function applyFilters(){
  var g=document.getElementById('f-group').value,l=document.getElementById('f-label').value,
      x=document.getElementById('f-lang').value,shown=0;
  document.querySelectorAll('details.t').forEach(function(d){
    var ok=(!g||d.dataset.group===g)&&(!l||d.dataset.label===l)&&(!x||d.dataset.lang===x);
    d.style.display=ok?'':'none'; if(ok){shown++;}
  });
  document.getElementById('f-count').textContent=shown+' shown';
}
document.querySelectorAll('.filters select').forEach(function(s){s.addEventListener('change',applyFilters);});
applyFilters();
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _head(*names: str) -> str:
    return "<tr>" + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr>"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _p(x: float | None) -> str:
    return "–" if x is None else f"{x:.2g}"


def _heat_colour(rate: float | None) -> str:
    if rate is None:
        return "#f0f0f0"
    # white → red; lightness drops with the refusal rate.
    return f"hsl(0,75%,{97 - 47 * rate:.0f}%)"


def _verdict(report: Mapping[str, Any]) -> str:
    v = report["verdict"]
    cls = "verdict flagged" if v["flagged"] else "verdict"
    parts = [f'<div class="{cls}"><p><strong>{_e(v["summary"])}</strong></p>']
    if len(v["findings"]) > 1:
        parts.append("<ul>" + "".join(f"<li>{_e(f)}</li>" for f in v["findings"][:20]) + "</ul>")
    parts += [f'<p class="caveat">{_e(c)}</p>' for c in v["caveats"]]
    parts.append("</div>")
    return "".join(parts)


def _facts(report: Mapping[str, Any]) -> str:
    judge = report["judge"]
    acc = judge.get("measured_accuracy")
    judge_line = f"{_e(judge.get('model') or judge.get('judge'))} ({_e(judge.get('kind'))})"
    acc_line = f"{_pct(acc)} on the shipped labelled set" if acc is not None else "not calibrated"
    run = report.get("run", {})
    rows = [("Run", run.get("id") or run.get("run_id")), ("Target", run.get("target")), ("Suite", run.get("suite"))]
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows if v is not None)
    cells += f"<tr><th>Judge</th><td>{judge_line}</td></tr><tr><th>Judge accuracy</th><td>{_e(acc_line)}</td></tr>"
    counts = "".join(
        f"<tr><th>{_e(k.replace('_', ' '))}</th><td class=num>{v}</td></tr>" for k, v in report["counts"].items()
    )
    return f"<table>{cells}</table><table>{counts}</table>"


def _calibration(report: Mapping[str, Any]) -> str:
    """The judge's measured accuracy per class, κ and parse failures, from its calibration run."""
    judge = report["judge"]
    cal = judge.get("calibration")
    notes = []
    rate = judge.get("parse_failure_rate")
    if rate is not None:
        notes.append(
            f"<p>Judge output that could not be read as a label in this run: {_pct(rate)} of answers "
            f"({report['counts']['parse_errors']} parse failures, {report['counts']['judge_refused']} judge refusals)"
            " — left out, never counted as labels.</p>"
        )
    if not cal:
        return "".join(notes)
    per_class = "".join(
        f"<tr><td>{_e(k)}</td><td class=num>{_pct(v)}</td></tr>" for k, v in (cal.get("per_class") or {}).items()
    )
    unscored = cal.get("unscored") or 0
    n = cal.get("n") or 0
    notes.append(
        f"<p>Calibration of this judge on {n} labelled answers: accuracy {_pct(cal.get('accuracy'))}, "
        f"Cohen's κ {cal.get('kappa', 0):.2f}, unparseable or refused {unscored} ({_pct(unscored / n if n else None)})."
        f"</p><table class=calibration>{_head('gold class', 'recall')}{per_class}</table>"
    )
    return "".join(notes)


def _heatmap(report: Mapping[str, Any]) -> str:
    hm = report["heatmap"]
    if not hm["groups"]:
        return "<p>No scored answers.</p>"
    head = "<tr><th>group \\ template</th>" + "".join(f"<th>{_e(t)}</th>" for t in hm["templates"]) + "</tr>"
    body = ""
    for g, row in zip(hm["groups"], hm["rates"], strict=True):
        cells = "".join(
            f'<td class=c style="background:{_heat_colour(r)}" title="{_e(g)} / {_e(t)}">{_pct(r)}</td>'
            for t, r in zip(hm["templates"], row, strict=True)
        )
        body += f"<tr><th>{_e(g)}</th>{cells}</tr>"
    return f'<table class="heat">{head}{body}</table>'


def _bars(rows: Sequence[Mapping[str, Any]], label_key: str) -> str:
    """Horizontal bars of broad and strict refusal with 95% whiskers, inline SVG."""
    if not rows:
        return "<p>No scored answers.</p>"
    width, left, bar_h, gap = 640, 170, 9, 8
    height = len(rows) * (2 * bar_h + gap) + 30
    scale = width - left - 20
    out = [f'<svg width="{width}" height="{height}" role="img">']
    for tick in range(0, 101, 25):
        x = left + scale * tick / 100
        out.append(f'<line x1="{x}" y1="0" x2="{x}" y2="{height - 20}" stroke="#eee"/>')
        out.append(f'<text x="{x}" y="{height - 5}" font-size="10" text-anchor="middle">{tick}%</text>')
    for i, row in enumerate(rows):
        y = i * (2 * bar_h + gap) + 4
        out.append(
            f'<text x="{left - 6}" y="{y + bar_h + 3}" font-size="11" text-anchor="end">{_e(row[label_key])}</text>'
        )
        for j, (measure, colour) in enumerate((("broad", "#e59a9a"), ("strict", "#b33"))):
            m = row[measure]
            yy = y + j * bar_h
            w = scale * (m["rate"] or 0)
            lo, hi = left + scale * m["ci_low"], left + scale * m["ci_high"]
            out.append(
                f'<rect x="{left}" y="{yy}" width="{w:.1f}" height="{bar_h - 1}" fill="{colour}">'
                f"<title>{_e(row[label_key])} {measure}: {_pct(m['rate'])} "
                f"(95% CI {_pct(m['ci_low'])}–{_pct(m['ci_high'])}, n={row['n']})</title></rect>"
            )
            mid = yy + (bar_h - 1) / 2
            out.append(f'<line x1="{lo:.1f}" y1="{mid}" x2="{hi:.1f}" y2="{mid}" stroke="#222"/>')
            for x in (lo, hi):
                out.append(f'<line x1="{x:.1f}" y1="{yy + 1}" x2="{x:.1f}" y2="{yy + bar_h - 2}" stroke="#222"/>')
    out.append("</svg>")
    legend = "<p><small>dark: strict (DENIAL) · light: broad (DENIAL + EVASIVE) · whiskers: 95% interval</small></p>"
    return "".join(out) + legend


def _rate_table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    head = "".join(f"<th>{_e(k)}</th>" for k in keys) + "<th>n</th><th>strict</th><th>broad</th><th>valence</th>"
    body = ""
    for r in rows:
        lead = "".join(f"<td>{_e(r[k])}</td>" for k in keys)
        s, b = r["strict"], r["broad"]
        val = "–" if r["valence_mean"] is None else f"{r['valence_mean']:+.2f}"
        body += (
            f"<tr>{lead}<td class=num>{r['n']}</td>"
            f"<td class=num>{_pct(s['rate'])} [{_pct(s['ci_low'])}, {_pct(s['ci_high'])}]</td>"
            f"<td class=num>{_pct(b['rate'])} [{_pct(b['ci_low'])}, {_pct(b['ci_high'])}]</td>"
            f"<td class=num>{val}</td></tr>"
        )
    return f"<table><tr>{head}</tr>{body}</table>"


def _member(t: Mapping[str, Any], side: str) -> str:
    """'guns: pro' for a per-topic stance test, the plain member otherwise."""
    if t.get("kind") == "stance_pair":
        return f"{t.get('group') or 'all topics'}: {t[side]}"
    return str(t[side])


def _tests_table(tests: Sequence[Mapping[str, Any]], *, valence: bool = False, limit: int = 60) -> str:
    if not tests:
        return "<p>No paired items for this comparison.</p>"
    ordered = sorted(tests, key=lambda t: (not t["flagged"], t["p_value"]))
    if valence:
        head = _head("a", "b", "pairs", "mean a", "mean b", "r", "p", "adj. p", "")
    else:
        head = _head("a", "b", "pairs", "only a refused", "only b refused", "ΔR", "index", "p", "adj. p", "")
    body = ""
    for t in ordered[:limit]:
        flag = '<td class="flag">flagged</td>' if t["flagged"] else "<td></td>"
        if valence:
            mid = "".join(f"<td class=num>{t[k]:+.2f}</td>" for k in ("mean_a", "mean_b", "effect_size"))
        else:
            mid = (
                f"<td class=num>{t['a_only_refused']}</td><td class=num>{t['b_only_refused']}</td>"
                f"<td class=num>{t['delta_r']:+.2f}</td><td class=num>{t['index']:+.2f}</td>"
            )
        body += (
            f"<tr><td>{_e(_member(t, 'a'))}</td><td>{_e(_member(t, 'b'))}</td><td class=num>{t['n_pairs']}</td>{mid}"
            f"<td class=num>{_p(t['p_value'])}</td><td class=num>{_p(t['p_adjusted'])}</td>{flag}</tr>"
        )
    more = (
        f"<p><small>{len(ordered) - limit} more tests, none flagged, in the JSON report.</small></p>"
        if len(ordered) > limit
        else ""
    )
    return f"<table>{head}{body}</table>{more}"


def _flag_cell(t: Mapping[str, Any]) -> str:
    if t["flagged"]:
        return '<td class="flag">flagged</td>'
    if t.get("explained_by"):
        return f"<td><small>explained by {_e(', '.join(t['explained_by']))}</small></td>"
    return "<td></td>"


def _flagged_first(tests: Sequence[Mapping[str, Any]], cls: str, head: str, cells: Any) -> str:
    """A table of tests, flagged ones first then by p; ``cells(t)`` gives a row's cells before p and flag."""
    body = "".join(
        f"<tr>{cells(t)}<td class=num>{_p(t['p_adjusted'])}</td>{_flag_cell(t)}</tr>"
        for t in sorted(tests, key=lambda t: (not t["flagged"], t["p_value"]))
    )
    return f'<table class="{cls}">{head}{body}</table>'


def _group_tests(report: Mapping[str, Any]) -> str:
    tests = report.get("group_tests") or []
    if not tests:
        return "<p>Fewer than two groups: nothing to compare.</p>"
    head = _head("group", "refused", "rest refused", "difference [95% CI]", "odds ratio [95% CI]", "test", "adj. p", "")

    def cells(t: Mapping[str, Any]) -> str:
        return (
            f"<td>{_e(t['name'])}</td><td class=num>{_pct(t['rate'])} ({t['k']}/{t['n']})</td>"
            f"<td class=num>{_pct(t['rest_rate'])} ({t['rest_k']}/{t['rest_n']})</td>"
            f"<td class=num>{100 * t['difference']:+.0f} [{100 * t['difference_ci_low']:+.0f}, "
            f"{100 * t['difference_ci_high']:+.0f}] points</td>"
            f"<td class=num>{t['odds_ratio']:.3g} [{t['odds_ratio_ci_low']:.3g}, {t['odds_ratio_ci_high']:.3g}]</td>"
            f"<td>{_e(t['method'])}</td>"
        )

    return _flagged_first(tests, "group-tests", head, cells)


def _group_language_tests(report: Mapping[str, Any]) -> str:
    tests = report.get("group_language_tests") or []
    if not tests:
        return "<p>No items paired across languages: the group × language test needs translations.</p>"
    head = _head("group", "languages", "group a → b", "others a → b", "gap − others' gap", "adj. p", "")

    def cells(t: Mapping[str, Any]) -> str:
        return (
            f"<td>{_e(t['name'])}</td><td>{_e(t['a'])} → {_e(t['b'])}</td>"
            f"<td class=num>{_pct(t['rate_a'])} → {_pct(t['rate_b'])} (n={t['n_pairs']})</td>"
            f"<td class=num>{_pct(t['rest_rate_a'])} → {_pct(t['rest_rate_b'])} (n={t['rest_n_pairs']})</td>"
            f"<td class=num>{100 * t['effect_size']:+.0f} points</td>"
        )

    return _flagged_first(tests, "group-language-tests", head, cells)


def _language_section(report: Mapping[str, Any]) -> str:
    langs = _rate_table(report["languages"], ["language"])
    pairs = report["language_pairs"]
    if not pairs:
        return langs + "<p>Only one language in this run.</p>"
    rows = "".join(
        f"<tr><td>{_e(t['a'])}</td><td>{_e(t['b'])}</td><td class=num>{t['n_pairs']}</td>"
        f"<td class=num>{t['kappa']:.2f}</td><td class=num>{_pct(t['agreement'])}</td>"
        f"<td class=num>{t['delta_r']:+.2f}</td><td class=num>{_p(t['p_adjusted'])}</td>"
        f"<td class=flag>{'flagged' if t['flagged'] else ''}</td></tr>"
        for t in pairs
    )
    head = _head("a", "b", "pairs", "κ", "agreement", "ΔR (a − b)", "adj. p", "")
    return (
        langs
        + f"<table>{head}{rows}</table>"
        + _group_language_grid(report)
        + "<h3>Group × language</h3>"
        + _group_language_tests(report)
    )


def _group_language_grid(report: Mapping[str, Any]) -> str:
    """Broad refusal per group (rows) and language (columns), coloured like the heatmap."""
    cells = {(r["group"], r["language"]): r["broad"]["rate"] for r in report["groups_by_language"]}
    groups = sorted({g for g, _ in cells})
    langs = sorted({lang for _, lang in cells})
    body = "".join(
        f"<tr><th>{_e(g)}</th>"
        + "".join(
            f'<td class=c style="background:{_heat_colour(cells.get((g, lang)))}">{_pct(cells.get((g, lang)))}</td>'
            for lang in langs
        )
        + "</tr>"
        for g in groups
    )
    return f'<p>Broad refusal by group and language:</p><table class="heat lang">{_head("group", *langs)}{body}</table>'


def _transcripts(report: Mapping[str, Any]) -> str:
    ts = report.get("transcripts")
    if ts is None:
        return "<p>This report was generated without transcripts.</p>"

    def options(values: set[str]) -> str:
        return '<option value="">all</option>' + "".join(
            f'<option value="{_e(v)}">{_e(v)}</option>' for v in sorted(values)
        )

    filters = (
        '<div class="filters">group <select id="f-group">'
        + options({t["group"] for t in ts})
        + '</select> label <select id="f-label">'
        + options({t["label"] for t in ts})
        + '</select> language <select id="f-lang">'
        + options({t["language"] for t in ts})
        + '</select> <span id="f-count"></span></div>'
    )
    items = []
    for t in ts:
        extra = []
        if t.get("valence") is not None:
            extra.append(f"valence {t['valence']:+.1f}")
        if t.get("flags"):
            extra.append("flags: " + ", ".join(t["flags"]))
        if t.get("thought_suppressed"):
            extra.append("thought suppressed")
        reasoning = f"<p><em>reasoning</em></p><pre>{_e(t['reasoning'])}</pre>" if t.get("reasoning") else ""
        error = f"<p><em>transport error:</em> {_e(t['error'])}</p>" if t.get("error") else ""
        items.append(
            f'<details class="t" data-group="{_e(t["group"])}" data-label="{_e(t["label"])}" '
            f'data-lang="{_e(t["language"])}">'
            f'<summary><span class="lab {_e(t["label"])}">{_e(t["label"])}</span> {_e(t["group"])} · '
            f"{_e(t['language'])} · {_e(t['template_id'])} #{t['sample_index']}</summary>"
            f"<p><em>prompt</em></p><pre>{_e(t['prompt'])}</pre>{reasoning}"
            f"<p><em>answer</em></p><pre>{_e(t['content'])}</pre>{error}"
            f"<p><small>{_e(' · '.join(extra))} {_e(t.get('rationale'))}</small></p></details>"
        )
    return filters + "".join(items)


def render_html(report: Mapping[str, Any]) -> str:
    """The whole report page; works offline (no external resources, inline JS only for filters)."""
    run = report.get("run", {})
    title = f"Haven audit — {run.get('target') or run.get('id') or 'report'}"
    spread = report["spread"]
    even = report.get("even_handedness")
    even_html = (
        f"<p>Even-handedness on paired stances: {_pct(even['even_share'])} of {even['n_pairs']} pro/con pairs treated "
        f"alike (pro only refused: {even['pro_only_refused']}, con only refused: {even['con_only_refused']}).</p>"
        if even
        else ""
    )
    blocks: list[tuple[str, str, str]] = [
        ("run", "Run and judge", _facts(report) + _calibration(report)),
        ("heatmap", "Refusal by group and template (broad)", _heatmap(report)),
        (
            "groups",
            "Refusal rate per group",
            _bars(report["groups"], "name")
            + _rate_table(report["groups"], ["group", "name"])
            + "<h3>Each group against the rest</h3>"
            + _group_tests(report)
            + f"<p>Spread across groups (omnibus): χ² = {spread['statistic']:.2f} (dof {spread['dof']}, "
            f"{_e(spread['method'])}), adjusted p = {_p(spread['p_adjusted'])}"
            f"{' — flagged' if spread['flagged'] else ''}.</p>",
        ),
        ("pairs", "Paired asymmetries (mirrored prompts)", _tests_table(report["asymmetries"]) + even_html),
        ("valence", "Valence toward the named group", _tests_table(report["valence"], valence=True)),
        ("languages", "Languages", _language_section(report)),
        ("transcripts", "Transcripts", _transcripts(report)),
    ]
    sections = [
        f"<h1>{_e(title)}</h1>",
        '<section id="verdict">' + _verdict(report) + "</section>",
        *(f'<section id="{sid}"><h2>{_e(h)}</h2>{body}</section>' for sid, h, body in blocks),
        f"<p><small>Report schema {_e(report['schema_version'])}, generated {_e(report['generated_at'])}; "
        f"α = {report['alpha']}, Holm correction over {report['tests_in_family']} tests.</small></p>",
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(sections)
        + f"<script>{_JS}</script></body></html>\n"
    )


# The report's one inline script, by hash: a server showing the report can allow exactly it in its
# Content-Security-Policy (``script-src 'sha256-…'``) and no script a model's answer might smuggle in.
SCRIPT_CSP_HASH = "sha256-" + base64.b64encode(hashlib.sha256(_JS.encode("utf-8")).digest()).decode("ascii")
