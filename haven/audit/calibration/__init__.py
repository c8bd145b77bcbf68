"""Judge calibration: score a judge against the shipped labelled set.

``load_set(language)`` reads ``labelled_v1.jsonl`` (210 answers per language for en, zh-Hans and
zh-Hant, balanced over COMPLETE / EVASIVE / DENIAL; provenance in its first line and in
compose.py). ``calibrate(scorer, language)`` runs the scorer over it and returns accuracy per
class, overall accuracy, Cohen's κ and the confusion matrix (``haven audit calibrate``);
``acalibrate`` is the same for callers already inside an event loop. Answers the judge could not
score count as wrong (they are in the confusion matrix under UNSCORED).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from haven.audit.calibration.compose import LANGUAGES, set_path
from haven.audit.records import Label, Response, SuiteItem
from haven.audit.scoring import Scorer
from haven.audit.stats import cohen_kappa
from haven.errors import AuditError

GOLD_LABELS = ("COMPLETE", "EVASIVE", "DENIAL")


def load_set(language: str | None = None) -> list[dict[str, Any]]:
    """The labelled records, optionally of one language; unknown language → AuditError."""
    if language is not None and language not in LANGUAGES:
        raise AuditError(f"No calibration set for language {language!r}; available: {', '.join(LANGUAGES)}.")
    lines = set_path().read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    records = [r for r in records if "_provenance" not in r]
    return [r for r in records if language is None or r["language"] == language]


def provenance() -> str:
    first = set_path().read_text(encoding="utf-8").splitlines()[0]
    return str(json.loads(first)["_provenance"])


@dataclass(frozen=True)
class CalibrationResult:
    judge: str
    language: str | None
    n: int
    accuracy: float
    kappa: float
    per_class: dict[str, float]
    """Recall per gold class: share of gold-X answers the judge labelled X."""
    confusion: dict[str, dict[str, int]]
    """confusion[gold][predicted] = count; predicted may also be UNSCORED or ERROR."""
    unscored: int
    per_language: dict[str, float] = field(default_factory=dict)
    parse_errors: int = 0
    """Judge replies with no readable label (a judge that cannot follow the format)."""
    judge_refused: int = 0
    """Judge replies that refused to grade."""

    @property
    def parse_failure_rate(self) -> float:
        """Share of the set the judge gave no usable label for (parse errors + refusals)."""
        return (self.parse_errors + self.judge_refused) / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "language": self.language,
            "set": set_path().name,
            "n": self.n,
            "accuracy": self.accuracy,
            "kappa": self.kappa,
            "per_class": self.per_class,
            "per_language": self.per_language,
            "confusion": self.confusion,
            "unscored": self.unscored,
            "parse_errors": self.parse_errors,
            "judge_refused": self.judge_refused,
            "parse_failure_rate": self.parse_failure_rate,
        }


def summarise(
    judge: str,
    language: str | None,
    records: Sequence[dict[str, Any]],
    predicted: Sequence[str],
    *,
    parse_errors: int = 0,
    judge_refused: int = 0,
) -> CalibrationResult:
    gold = [r["gold_label"] for r in records]
    confusion: dict[str, dict[str, int]] = {g: {} for g in GOLD_LABELS}
    for g, p in zip(gold, predicted, strict=True):
        confusion[g][p] = confusion[g].get(p, 0) + 1
    n = len(gold)
    correct = sum(1 for g, p in zip(gold, predicted, strict=True) if g == p)
    per_class = {
        g: (confusion[g].get(g, 0) / total) if (total := sum(confusion[g].values())) else 0.0 for g in GOLD_LABELS
    }
    per_language: dict[str, float] = {}
    for lang in sorted({r["language"] for r in records}):
        idx = [i for i, r in enumerate(records) if r["language"] == lang]
        per_language[lang] = sum(1 for i in idx if gold[i] == predicted[i]) / len(idx)
    return CalibrationResult(
        judge=judge,
        language=language,
        n=n,
        accuracy=correct / n if n else 0.0,
        kappa=cohen_kappa(gold, list(predicted)),
        per_class=per_class,
        confusion=confusion,
        unscored=sum(1 for p in predicted if p not in GOLD_LABELS),
        per_language=per_language,
        parse_errors=parse_errors,
        judge_refused=judge_refused,
    )


def stratified(records: Sequence[dict[str, Any]], per_cell: int) -> list[dict[str, Any]]:
    """The first ``per_cell`` records of every (language, gold class): a small balanced subset, in file order."""
    taken: dict[tuple[str, str], int] = {}
    out = []
    for r in records:
        key = (r["language"], r["gold_label"])
        if taken.get(key, 0) < per_cell:
            taken[key] = taken.get(key, 0) + 1
            out.append(r)
    return out


async def acalibrate(
    scorer: Scorer, language: str | None = None, *, concurrency: int = 8, per_cell: int | None = None
) -> CalibrationResult:
    records = load_set(language)
    if per_cell is not None:
        records = stratified(records, per_cell)
    sem = asyncio.Semaphore(concurrency)
    failures = {"parse": 0, "refused": 0}

    async def one(r: dict[str, Any]) -> str:
        item = SuiteItem(
            item_id=r["id"],
            suite="calibration",
            group=r["target"],
            template_id=r["task"],
            language=r["language"],
            prompt=r["prompt"],
            target=r["target"],
        )
        async with sem:
            j = await scorer.score(item, Response(item_id=r["id"], sample_index=0, content=r["response"]))
        failures["parse"] += int(j.parse_error)
        failures["refused"] += int(j.judge_refused)
        return j.label.value if j.label is not Label.ERROR else "ERROR"

    predicted = await asyncio.gather(*(one(r) for r in records))
    return summarise(
        scorer.name, language, records, predicted, parse_errors=failures["parse"], judge_refused=failures["refused"]
    )


def calibrate(
    scorer: Scorer, language: str | None = None, *, concurrency: int = 8, per_cell: int | None = None
) -> CalibrationResult:
    """Score ``scorer`` against the labelled set (blocking; use ``acalibrate`` inside a loop).

    ``per_cell`` limits the set to that many answers per language and gold class (a quick check).
    """
    return asyncio.run(acalibrate(scorer, language, concurrency=concurrency, per_cell=per_cell))


__all__ = ["CalibrationResult", "acalibrate", "calibrate", "load_set", "provenance", "stratified", "summarise"]
