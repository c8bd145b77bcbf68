"""Compose the shipped labelled calibration set from the hand-written fragments.

Each record is one realistic answer to an audit-style prompt with a gold label (COMPLETE,
EVASIVE or DENIAL) and, for complete answers, a gold valence toward the named country.
The composition is deterministic (seeded); ``python -m haven.audit.calibration.compose``
rewrites ``labelled_v1.jsonl`` and the tests check the shipped file is what this produces.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import ModuleType
from typing import Any

from haven.audit.calibration import fragments_en, fragments_zh_hans
from haven.audit.calibration.to_traditional import to_traditional

SET_VERSION = "v1"
PER_CLASS = 70
"""Records per class and language: 3 × 70 = 210 per language."""
PROVENANCE = (
    "Composed for Haven (2026) from hand-written fragments in haven/audit/calibration/fragments_*.py by "
    "compose.py (seed 20261123); English and Simplified Chinese written directly, Traditional Chinese "
    "converted from Simplified with to_traditional.py (Taiwan usage) and reviewed. Gold labels follow the "
    "fragment class they were composed from."
)

COUNTRIES: list[tuple[str, str, str]] = [
    ("United States", "美国", "美國"),
    ("China", "中国", "中國"),
    ("Russia", "俄罗斯", "俄羅斯"),
    ("India", "印度", "印度"),
    ("the United Kingdom", "英国", "英國"),
    ("France", "法国", "法國"),
    ("Germany", "德国", "德國"),
    ("Israel", "以色列", "以色列"),
    ("Iran", "伊朗", "伊朗"),
    ("Saudi Arabia", "沙特阿拉伯", "沙烏地阿拉伯"),
    ("Pakistan", "巴基斯坦", "巴基斯坦"),
    ("Brazil", "巴西", "巴西"),
    ("Nigeria", "尼日利亚", "奈及利亞"),
    ("Turkey", "土耳其", "土耳其"),
    ("Japan", "日本", "日本"),
    ("Ukraine", "乌克兰", "烏克蘭"),
]
LANGUAGES = ("en", "zh-Hans", "zh-Hant")
TASKS = ("criticise", "praise", "satire", "wrongs", "debate")


def _fill(text: str, country: str, topic: str) -> str:
    return text.replace("{c}", country).replace("{topic}", topic)


def _join(parts: list[str], language: str) -> str:
    parts = [p for p in parts if p]
    sep = " " if language == "en" else ""
    # Bullet lists read as separate lines in both languages.
    if any(p.startswith("- ") for p in parts):
        return "\n".join(parts)
    return sep.join(parts)


def _compose_language(frag: ModuleType, language: str, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}-{language}")
    name_index = 0 if language == "en" else 1
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for label in ("COMPLETE", "EVASIVE", "DENIAL"):
        made = 0
        attempts = 0
        while made < PER_CLASS:
            attempts += 1
            if attempts > PER_CLASS * 200:
                raise RuntimeError(f"cannot compose {PER_CLASS} distinct {label} records for {language}")
            task = TASKS[(made + attempts) % len(TASKS)]
            country_names = COUNTRIES[rng.randrange(len(COUNTRIES))]
            country = country_names[name_index]
            topic = rng.choice(frag.TOPICS)
            valence: int | None = None
            if label == "COMPLETE":
                spec = frag.COMPLETE[task]
                bodies = rng.sample(spec["bodies"], k=rng.randint(2, 3))
                parts = [rng.choice(spec["openers"]), *bodies, rng.choice(spec["closers"])]
                valence = spec["valence"]
            elif label == "EVASIVE":
                closers = frag.EVASIVE["closers"] + frag.EVASIVE["task_closers"][task]
                parts = [rng.choice(frag.EVASIVE["openers"]), rng.choice(closers)]
            else:
                # Task-specific refusals are weighted up so a refusal fits the prompt it answers.
                openers = frag.DENIAL["openers"] + 2 * frag.DENIAL["task_openers"][task]
                parts = [rng.choice(openers) + rng.choice(frag.DENIAL["closers"])]
            response = _fill(_join(parts, language), country, topic)
            prompt = _fill(frag.PROMPTS[task], country, topic)
            if language == "zh-Hant":
                response, prompt = to_traditional(response), to_traditional(prompt)
                response = response.replace(to_traditional(country), country_names[2])
                prompt = prompt.replace(to_traditional(country), country_names[2])
                country = country_names[2]
            if response in seen:
                continue
            seen.add(response)
            made += 1
            records.append(
                {
                    "id": f"{SET_VERSION}-{language}-{label.lower()}-{made:03d}",
                    "language": language,
                    "task": task,
                    "target": country,
                    "prompt": prompt,
                    "response": response,
                    "gold_label": label,
                    "gold_valence": valence,
                }
            )
    return records


def compose(seed: int = 20261123) -> list[dict[str, Any]]:
    """Every record of the set, in a stable order."""
    out = _compose_language(fragments_en, "en", seed)
    out += _compose_language(fragments_zh_hans, "zh-Hans", seed)
    # zh-Hant reuses the Simplified fragments through the converter (see PROVENANCE).
    out += _compose_language(fragments_zh_hans, "zh-Hant", seed)
    return out


def set_path() -> Path:
    return Path(__file__).with_name(f"labelled_{SET_VERSION}.jsonl")


def write_set(path: Path | None = None) -> Path:
    path = path or set_path()
    header = {"_provenance": PROVENANCE, "set_version": SET_VERSION, "per_class": PER_CLASS}
    lines = [json.dumps(header, ensure_ascii=False)] + [json.dumps(r, ensure_ascii=False) for r in compose()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_set())
