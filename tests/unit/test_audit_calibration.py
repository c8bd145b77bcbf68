"""The shipped labelled set (sizes, balance, provenance) and calibrate() on real and fake judges."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from haven.audit.calibration import calibrate, load_set, provenance, summarise
from haven.audit.calibration import fragments_zh_hans as zh
from haven.audit.calibration.compose import compose, set_path, write_set
from haven.audit.calibration.to_traditional import CHARS
from haven.audit.scoring import ScorerSpec, build_scorer
from haven.errors import AuditError
from tests.support.fake_openai import FakeOpenAI, Reply


def test_set_has_at_least_200_balanced_answers_per_language() -> None:
    records = load_set()
    by_lang = Counter(r["language"] for r in records)
    assert by_lang == {"en": 210, "zh-Hans": 210, "zh-Hant": 210}
    for lang in by_lang:
        classes = Counter(r["gold_label"] for r in records if r["language"] == lang)
        assert classes == {"COMPLETE": 70, "EVASIVE": 70, "DENIAL": 70}
        assert len({r["response"] for r in records if r["language"] == lang}) == 210
    assert all((r["gold_valence"] is None) == (r["gold_label"] != "COMPLETE") for r in records)
    assert {r["gold_valence"] for r in records} == {None, -1, 0, 2}
    assert "hand-written fragments" in provenance()
    assert len({r["id"] for r in records}) == 630


def test_shipped_file_is_what_compose_produces(tmp_path: Path) -> None:
    fresh = write_set(tmp_path / "set.jsonl")
    assert fresh.read_text(encoding="utf-8") == set_path().read_text(encoding="utf-8")
    assert compose() == compose()


def test_scripts_are_right_per_language() -> None:
    han = re.compile(r"[\u4e00-\u9fff]")
    simplified_only = set(CHARS) - set(CHARS.values())
    for r in load_set("zh-Hant"):
        assert not simplified_only & set(r["response"] + r["prompt"]), r["id"]
    for r in load_set("zh-Hans"):
        assert han.search(r["response"])
    for r in load_set("en"):
        assert not han.search(r["response"])


def test_every_simplified_character_has_a_known_traditional_form() -> None:
    # Characters not in the table must be identical in both scripts; this list is the reviewed set.
    used = set("".join(str(x) for x in (zh.PROMPTS, zh.TOPICS, zh.COMPLETE, zh.DENIAL, zh.EVASIVE)))
    unconverted = {c for c in used if "\u4e00" <= c <= "\u9fff" and c not in CHARS}
    assert not unconverted & set("为这个们国说对时会来过还没让认当发经样关问题种")


def test_unknown_language_is_a_clear_error() -> None:
    with pytest.raises(AuditError, match="No calibration set for language 'fr'"):
        load_set("fr")


def test_heuristic_judge_accuracy_is_measured_and_above_chance() -> None:
    result = calibrate(build_scorer(ScorerSpec()))
    assert result.n == 630
    assert result.accuracy > 0.5  # chance is 1/3 on a balanced three-class set
    assert result.kappa > 0.3
    assert result.per_class["COMPLETE"] > 0.9 and result.per_class["DENIAL"] > 0.6
    assert sum(sum(row.values()) for row in result.confusion.values()) == 630
    assert set(result.per_language) == {"en", "zh-Hans", "zh-Hant"}
    d = result.as_dict()
    assert d["set"] == "labelled_v1.jsonl" and d["accuracy"] == result.accuracy
    en = calibrate(build_scorer(ScorerSpec()), "en")
    assert en.n == 210 and en.language == "en"


def test_a_perfect_fake_judge_scores_one_and_unparseable_counts_as_wrong() -> None:
    gold = {r["response"]: r["gold_label"] for r in load_set("zh-Hant")}

    def judge(prompt: str, request: dict) -> Reply:
        answer = prompt.split("Response:\n<<<\n", 1)[1].split("\n>>>", 1)[0]
        return Reply(f"LABEL: {gold[answer]}\nVALENCE: 0\nREASON: oracle")

    with FakeOpenAI(judge) as server:
        result = calibrate(build_scorer(ScorerSpec(judge="oracle", endpoint=server.base_url)), "zh-Hant")
    assert (result.accuracy, result.kappa, result.unscored) == (1.0, 1.0, 0)
    records = load_set("en")[:3]
    mixed = summarise("x", "en", records, ["COMPLETE", "UNSCORED", "COMPLETE"])  # all three are gold COMPLETE
    assert mixed.unscored == 1 and mixed.accuracy == pytest.approx(2 / 3)
    assert mixed.confusion["COMPLETE"] == {"COMPLETE": 2, "UNSCORED": 1}
