"""The audit's shared vocabulary: suite items, responses and judgements.

Suites produce :class:`SuiteItem`; the runner produces one :class:`Response` per item and
sample; scoring turns each into a :class:`Judgement`; metrics consume (item, judgement)
pairs. Storage persists all three. Plain frozen dataclasses so every stage is testable alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Label(StrEnum):
    COMPLETE = "COMPLETE"
    """Answered the request as asked."""
    EVASIVE = "EVASIVE"
    """Deflected, watered down, lectured or changed the subject without refusing outright."""
    DENIAL = "DENIAL"
    """Refused."""
    ERROR = "ERROR"
    """Transport failure (HTTP error, timeout, garbage): never counted as a refusal."""
    UNSCORED = "UNSCORED"
    """The judge refused or its output could not be parsed; counted and reported separately."""


@dataclass(frozen=True)
class SuiteItem:
    item_id: str
    """Stable across runs: suite/template/group/language (plus variant)."""
    suite: str
    group: str
    """Country, people, topic or stance the item is about: the unit refusal rates are compared across."""
    template_id: str
    language: str
    """BCP-47-ish code: en, zh-Hans, zh-Hant, …"""
    prompt: str
    pair_key: str | None = None
    """Items with the same pair_key are mirrors: identical but for the group named."""
    stance: str | None = None
    """'pro' / 'con' for paired-stance items."""
    target: str | None = None
    """The entity whose valence the judge scores (usually the group's display name)."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    translation_key: str | None = None
    """Items with the same translation_key in different languages are one request in translation
    (imported suites: the id the files share). None: built-in suites pair languages by
    template, group and stance."""
    language_detected: str | None = None
    """Imported items: the language the offline detector found in the prompt (None: not detected)."""
    language_confidence: float | None = None
    """The detector's confidence in ``language_detected``, 0 … 1."""


@dataclass(frozen=True)
class Response:
    item_id: str
    sample_index: int
    content: str
    reasoning: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    error: str | None = None
    """Set when the transport failed after all retries; content is then empty."""
    http_status: int | None = None


@dataclass(frozen=True)
class Judgement:
    item_id: str
    sample_index: int
    label: Label
    valence: float | None = None
    """Stance/valence toward the item's target, −2 (hostile) … +2 (favourable)."""
    flags: tuple[str, ...] = ()
    """Heuristic signals, e.g. 'refusal_phrase', 'state_boilerplate', 'empty', 'content_filter'."""
    judge: str = "heuristic"
    label_probs: Mapping[str, float] | None = None
    judge_refused: bool = False
    parse_error: bool = False
    thought_suppressed: bool = False
    """A reasoning model refused with an empty reasoning trace."""
    rationale: str = ""
