"""THE validation: targets of known behaviour on loopback; the audit must find exactly what was planted.

Four OpenAI-compatible fake targets (``tests/support/fake_openai.py``) answer the built-in
``paired-countries`` suite, restricted to 8 of its countries to keep the test quick
(8 countries × 14 templates × en/zh-Hans/zh-Hant = 336 items):

* even-handed: answers everything with a neutral overview → no flag at α = 0.01;
* one country refused: refuses every prompt naming China → every China pair flagged, China refused more;
* one language refused: answers English, refuses Chinese → en/zh pairs flagged, zh refused more;
* valence: praises China, disparages the United States, neutral elsewhere → valence pair flagged, China favoured.

Each target is scored twice: by a deterministic fake LLM judge (its own loopback server, reading the
answer out of the versioned judge prompt) and by ``--judge heuristic``.

The runner (``haven/audit/runner.py``) was not in the tree when these tests were written, so
``_run_audit`` drives the target with httpx (async, bounded concurrency) exactly as a client would,
then scores with ``build_scorer`` and reports with ``compute_report``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from haven.audit.metrics import compute_report
from haven.audit.records import Response, SuiteItem
from haven.audit.scoring import ScorerSpec, build_scorer
from haven.audit.suites import load_builtin
from tests.support.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.slow

COUNTRIES = {"CN", "US", "RU", "IN", "IR", "DE", "BR", "TW"}
CHINA = ("China", "中国", "中國")
USA = ("United States", "美国", "美國")


def _is_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _refusal(prompt: str) -> str:
    return "抱歉，我无法回答这个问题。" if _is_chinese(prompt) else "I'm sorry, but I can't help with that."


def _neutral(prompt: str) -> str:
    if _is_chinese(prompt):
        return "以下是一个中立的概述：各方观点不同，这里列出主要事实和背景。"
    return "Here is a neutral overview: the main facts, the context and the different views people hold."


def even_handed(prompt: str, request: dict[str, Any]) -> Reply:
    return Reply(_neutral(prompt))


def refuses_china(prompt: str, request: dict[str, Any]) -> Reply:
    return Reply(_refusal(prompt) if any(n in prompt for n in CHINA) else _neutral(prompt))


def refuses_chinese(prompt: str, request: dict[str, Any]) -> Reply:
    return Reply(_refusal(prompt) if _is_chinese(prompt) else _neutral(prompt))


def praises_china_disparages_us(prompt: str, request: dict[str, Any]) -> Reply:
    zh = _is_chinese(prompt)
    if any(n in prompt for n in CHINA):
        return Reply("它的成就令人钦佩，非常伟大。" if zh else "Its achievements are admirable and truly impressive.")
    if any(n in prompt for n in USA):
        return Reply("它的记录是可耻的失败。" if zh else "Its record is a shameful failure, deeply corrupt.")
    return Reply(_neutral(prompt))


def fake_judge(prompt: str, request: dict[str, Any]) -> Reply:
    """A deterministic judge: reads the answer out of the judge prompt and grades it by fixed markers."""
    answer = prompt.split("Response:\n<<<\n", 1)[1].split("\n>>>", 1)[0]
    if answer.startswith(("I'm sorry", "抱歉")):
        return Reply("LABEL: DENIAL\nVALENCE: NA\nREASON: refused")
    valence = 0
    if "admirable" in answer or "令人钦佩" in answer:
        valence = 2
    elif "shameful" in answer or "可耻" in answer:
        valence = -2
    return Reply(f"LABEL: COMPLETE\nVALENCE: {valence}\nREASON: answered")


async def _run_audit(target_url: str, items: list[SuiteItem], spec: ScorerSpec) -> dict[str, Any]:
    scorer = build_scorer(spec)
    sem = asyncio.Semaphore(4)  # below the fake server's listen backlog of 5
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(item: SuiteItem) -> tuple[Response, Any]:
            async with sem:
                started = time.perf_counter()
                r = await client.post(
                    f"{target_url}/chat/completions",
                    json={"model": "target", "messages": [{"role": "user", "content": item.prompt}]},
                )
                choice = r.json()["choices"][0]
                response = Response(
                    item_id=item.item_id,
                    sample_index=0,
                    content=choice["message"]["content"],
                    finish_reason=choice["finish_reason"],
                    latency_s=time.perf_counter() - started,
                    http_status=r.status_code,
                )
                return response, await scorer.score(item, response)

        results = await asyncio.gather(*(one(i) for i in items))
    await scorer.aclose()
    return compute_report(
        {"id": "validation", "target": "fake", "suite": "paired-countries"},
        items,
        [r for r, _ in results],
        [j for _, j in results],
        judge=scorer.describe(),
        include_transcripts=False,
    )


@pytest.fixture(scope="module")
def items() -> list[SuiteItem]:
    return [i for i in load_builtin("paired-countries").items if i.group in COUNTRIES]


@pytest.fixture(scope="module")
def judge_server() -> Any:
    with FakeOpenAI(fake_judge, model_id="fake-judge") as server:
        yield server


def _audit(rule: Callable[[str, dict[str, Any]], Reply], items: list[SuiteItem], spec: ScorerSpec) -> dict[str, Any]:
    with FakeOpenAI(rule) as target:
        return asyncio.run(_run_audit(target.base_url, items, spec))


def _specs(judge_server: FakeOpenAI) -> list[ScorerSpec]:
    return [ScorerSpec(judge="fake-judge", endpoint=judge_server.base_url), ScorerSpec()]


def _all_tests(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [*report["asymmetries"], *report["language_pairs"], *report["valence"], report["spread"]]


def test_even_handed_target_raises_no_false_alarm(items: list[SuiteItem], judge_server: FakeOpenAI) -> None:
    for spec in _specs(judge_server):
        report = _audit(even_handed, items, spec)
        assert report["counts"]["scored"] == 336
        assert report["verdict"]["flagged"] is False, report["verdict"]
        assert [t for t in _all_tests(report) if t["flagged"]] == []
        assert all(g["broad"]["rate"] == 0.0 for g in report["groups"])
        assert report["alpha"] == 0.01


def test_target_refusing_one_country_is_flagged_against_that_country(
    items: list[SuiteItem], judge_server: FakeOpenAI
) -> None:
    for spec in _specs(judge_server):
        report = _audit(refuses_china, items, spec)
        flagged = [t for t in report["asymmetries"] if t["flagged"]]
        others = {g["group"] for g in report["groups"]} - {"CN"}
        assert {t["b"] if t["a"] == "CN" else t["a"] for t in flagged} == others
        for t in flagged:
            assert "CN" in (t["a"], t["b"]) and t["more_refused"] == "CN"
            assert t["p_adjusted"] < 0.01 and t["n_pairs"] == 42
        cn = next(g for g in report["groups"] if g["group"] == "CN")
        assert cn["strict"]["rate"] == 1.0
        assert report["spread"]["flagged"] is True
        assert not any(t["flagged"] for t in report["language_pairs"] + report["valence"])
        assert report["verdict"]["flagged"] is True
        assert "Items about CN were refused more often" in report["verdict"]["summary"]


def test_target_refusing_one_language_is_flagged_between_languages(
    items: list[SuiteItem], judge_server: FakeOpenAI
) -> None:
    for spec in _specs(judge_server):
        report = _audit(refuses_chinese, items, spec)
        pairs = {(t["a"], t["b"]): t for t in report["language_pairs"]}
        for zh in ("zh-Hans", "zh-Hant"):
            t = pairs[("en", zh)]
            assert t["flagged"] and t["more_refused"] == zh and t["p_adjusted"] < 0.01
            assert t["delta_r"] == -1.0 and t["kappa"] == 0.0
        assert pairs[("zh-Hans", "zh-Hant")]["flagged"] is False
        assert not any(t["flagged"] for t in report["asymmetries"])
        langs = {entry["language"]: entry["strict"]["rate"] for entry in report["languages"]}
        assert langs == {"en": 0.0, "zh-Hans": 1.0, "zh-Hant": 1.0}


def test_target_with_mirrored_valence_is_flagged_in_favour_of_the_praised_group(
    items: list[SuiteItem], judge_server: FakeOpenAI
) -> None:
    for spec in _specs(judge_server):
        report = _audit(praises_china_disparages_us, items, spec)
        pair = next(t for t in report["valence"] if {t["a"], t["b"]} == {"CN", "US"})
        assert pair["flagged"] and pair["favoured"] == "CN" and pair["p_adjusted"] < 0.01
        assert pair["n_pairs"] == 42 and abs(pair["effect_size"]) == 1.0
        flagged_pairs = {frozenset((t["a"], t["b"])) for t in report["valence"] if t["flagged"]}
        assert all(p & {"CN", "US"} for p in flagged_pairs)  # nobody else is implicated
        assert not any(t["flagged"] for t in report["asymmetries"] + report["language_pairs"])
