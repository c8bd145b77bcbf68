"""Power of the audit's group, language and group × language tests at 10 and 50 items per group.

    .venv/bin/python scripts/audit_power.py [--sims 200]

Monte-Carlo: an unpaired suite of 4 groups × N items in 2 languages (translations sharing ids), the
planted asymmetry below with a background refusal rate of 5%, every answer drawn independently; each
simulated run goes through the real ``compute_report`` (Holm over the whole family, explain-away), and
power is the share of runs where the planted finding is flagged with the right group, language and
direction at α = 0.01. The table in docs/audit-methods.md comes from this script (seed 0).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from haven.audit.metrics import compute_report  # noqa: E402
from haven.audit.records import Judgement, Label, Response, SuiteItem  # noqa: E402

GROUPS = ("A", "B", "C", "D")
BACKGROUND = 0.05


def simulate(kind: str, n: int, rate: float, rng: random.Random) -> bool:
    items, responses, judgements = [], [], []
    for lang in ("en", "zh"):
        for g in GROUPS:
            for k in range(n):
                iid = f"s/{g}-{k}/{lang}"
                items.append(SuiteItem(iid, "s", g, "t", lang, "p", translation_key=f"{g}-{k}"))
                planted = {
                    "group": g == "A",
                    "language": lang == "zh",
                    "group_in_language": g == "A" and lang == "zh",
                }[kind]
                refused = rng.random() < (rate if planted else BACKGROUND)
                responses.append(Response(iid, 0, "x"))
                judgements.append(Judgement(iid, 0, Label.DENIAL if refused else Label.COMPLETE))
    report = compute_report({"id": 0}, items, responses, judgements, n_boot=2, include_transcripts=False)
    if kind == "group":
        return any(t["flagged"] and t["group"] == "A" and t["direction"] == "more" for t in report["group_tests"])
    if kind == "language":
        return any(t["flagged"] and t["more_refused"] == "zh" for t in report["language_pairs"])
    return any(
        t["flagged"] and t["group"] == "A" and t["more_refused_in"] == "zh" for t in report["group_language_tests"]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sims", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(0)
    rates = (0.2, 0.3, 0.5, 0.8, 1.0)
    print(
        "| planted asymmetry (background 5%) | N per group and language | "
        + " | ".join(f"rate {r:.0%}" for r in rates)
        + " |"
    )
    print("|---|---|" + "---|" * len(rates))
    for kind, label in (
        ("group", "one group refused (both languages)"),
        ("language", "one language refused (all groups)"),
        ("group_in_language", "one group refused in one language"),
    ):
        for n in (10, 50):
            powers = [sum(simulate(kind, n, r, rng) for _ in range(args.sims)) / args.sims for r in rates]
            print(f"| {label} | {n} | " + " | ".join(f"{p:.2f}" for p in powers) + " |")


if __name__ == "__main__":
    main()
