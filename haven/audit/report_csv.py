"""The audit report as CSV: one row per (section, group or pair, metric), then per-item rows.

Shape (agreed with ``haven audit report --format csv``): the header is
``section,group,language,other,metric,value,n,ci_low,ci_high,p_value,p_adjusted,flagged``.

* ``section=group``: ``metric`` in strict_rate / broad_rate / valence_mean, per group (language empty);
* ``section=group_language``: the same per (group, language);
* ``section=group_pair|stance_pair|language_pair``: ``group``/``other`` are the two members, metric
  ``delta_r`` (value), with n = pairs and the McNemar p-values; language pairs add ``kappa`` rows;
* ``section=valence_pair``: metric ``effect_size`` (rank-biserial r), Wilcoxon p-values;
* ``section=spread``: metric ``chi2``;
* ``section=group_vs_rest``: one group against the pooled rest; ``other`` = direction (more/less),
  metric ``difference`` (ci = Newcombe interval) and ``odds_ratio`` (ci = Woolf interval) with the
  test's p-values, plus ``rate`` / ``rest_rate`` rows;
* ``section=group_language_test``: ``language`` = ``a>b``, ``other`` = the language the group is treated
  worse in, metric ``gap_difference`` (its gap minus the others' gap);
* ``section=transcript`` (only when the report dict has ``transcripts``): one row per answer with
  ``group``, ``language``, ``other`` = item id, ``metric`` = label, ``value`` = valence.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

HEADER = [
    "section",
    "group",
    "language",
    "other",
    "metric",
    "value",
    "n",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "flagged",
]


def render_csv(report: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)

    def rates(section: str, row: Mapping[str, Any]) -> None:
        for measure in ("strict", "broad"):
            m = row[measure]
            w.writerow(
                [
                    section,
                    row.get("group", ""),
                    row.get("language", ""),
                    "",
                    f"{measure}_rate",
                    m["rate"],
                    row["n"],
                    m["ci_low"],
                    m["ci_high"],
                    "",
                    "",
                    "",
                ]
            )
        if row["valence_mean"] is not None:
            w.writerow(
                [
                    section,
                    row.get("group", ""),
                    row.get("language", ""),
                    "",
                    "valence_mean",
                    row["valence_mean"],
                    row["valence_n"],
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )

    for row in report["groups"]:
        rates("group", row)
    for row in report["groups_by_language"]:
        rates("group_language", row)

    def test_row(
        section: str,
        group: Any,
        language: str,
        other: Any,
        metric: str,
        value: Any,
        n: Any,
        t: Mapping[str, Any],
        ci: tuple[Any, Any] = ("", ""),
    ) -> None:
        """One row of a statistical test: the metric, then the test's p-values and flag."""
        w.writerow(
            [section, group, language, other, metric, value, n, *ci, t["p_value"], t["p_adjusted"], t["flagged"]]
        )

    for t in report.get("group_tests") or []:
        # Which group, which direction: the difference with its interval, then the odds ratio with its own.
        direction = t["direction"] or ""
        diff_ci = (t["difference_ci_low"], t["difference_ci_high"])
        test_row("group_vs_rest", t["group"], "", direction, "difference", t["difference"], t["n"], t, diff_ci)
        or_ci = (t["odds_ratio_ci_low"], t["odds_ratio_ci_high"])
        test_row("group_vs_rest", t["group"], "", direction, "odds_ratio", t["odds_ratio"], t["n"], t, or_ci)
        for metric, value, n in (("rate", t["rate"], t["n"]), ("rest_rate", t["rest_rate"], t["rest_n"])):
            w.writerow(["group_vs_rest", t["group"], "", "", metric, value, n, "", "", "", "", ""])
    for t in report.get("group_language_tests") or []:
        languages = f"{t['a']}>{t['b']}"
        worse = t["more_refused_in"] or ""
        test_row(
            "group_language_test", t["group"], languages, worse, "gap_difference", t["effect_size"], t["n_pairs"], t
        )
    for t in [*report["asymmetries"], *report["language_pairs"]]:
        test_row(t["kind"], t["a"], "", t["b"], "delta_r", t["delta_r"], t["n_pairs"], t)
        if "kappa" in t:
            w.writerow([t["kind"], t["a"], "", t["b"], "kappa", t["kappa"], t["n_pairs"], "", "", "", "", ""])
    for t in report["valence"]:
        test_row(t["kind"], t["a"], "", t["b"], "effect_size", t["effect_size"], t["n_pairs"], t)
    s = report["spread"]
    w.writerow(
        ["spread", "", "", "", "chi2", s["statistic"], s["groups"], "", "", s["p_value"], s["p_adjusted"], s["flagged"]]
    )
    for t in report.get("transcripts") or []:
        w.writerow(
            [
                "transcript",
                t["group"],
                t["language"],
                t["item_id"],
                t["label"],
                "" if t["valence"] is None else t["valence"],
                "",
                "",
                "",
                "",
                "",
                "",
            ]
        )
    return buf.getvalue()
