"""The web UI's message catalogues: every language has every key of English, no stray keys, the same
{placeholders}, and every key the JavaScript uses exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "haven" / "web"
LANGUAGES = ["en", "zh-Hans", "zh-Hant", "fr", "es", "ar", "hi", "ur", "sw"]


def catalogue(code: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((WEB / "i18n" / f"{code}.json").read_text(encoding="utf-8"))
    return data


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", text))


def test_the_catalogues_are_the_languages_the_ui_offers() -> None:
    files = sorted(p.stem for p in (WEB / "i18n").glob("*.json"))
    assert files == sorted(LANGUAGES)
    offered = re.findall(r'code: "([\w-]+)"', (WEB / "js" / "i18n.js").read_text(encoding="utf-8"))
    assert offered == LANGUAGES


@pytest.mark.parametrize("code", LANGUAGES[1:])
def test_no_key_is_missing_in_any_language(code: str) -> None:
    english, other = catalogue("en"), catalogue(code)
    assert sorted(set(english) - set(other)) == [], f"{code} lacks these keys"
    assert sorted(set(other) - set(english)) == [], f"{code} has keys English does not"
    for key, text in english.items():
        assert other[key].strip(), f"{code}: {key} is empty"
        assert placeholders(other[key]) == placeholders(text), f"{code}: {key} placeholders differ"


def test_every_key_used_by_the_javascript_exists() -> None:
    english = catalogue("en")
    used: set[str] = set()
    for path in (WEB / "js").rglob("*.js"):
        used |= set(re.findall(r'\bt\("([\w.]+)"', path.read_text(encoding="utf-8")))
    # Keys built at run time: t(`chat.group.${group}`) and the like.
    dynamic = {
        *(f"chat.group.{g}" for g in ("today", "yesterday", "week", "month", "older")),
        *(f"settings.theme.{c}" for c in ("system", "light", "dark")),
        *(f"admin.role.{r}" for r in ("admin", "user")),
        *(f"admin.{tab}" for tab in ("users", "models", "security", "audit")),
        *(f"param.{p}" for p in ("temperature", "top_p", "max_tokens", "seed")),
        "settings.preferences", "settings.retention", "settings.password", "settings.export",
        "settings.deleteAccount",
    }
    missing = sorted((used | dynamic) - set(english))
    assert missing == []
