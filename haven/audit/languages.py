"""Language codes and offline language detection for imported audit suites.

* ``normalise_language(code)``: any ISO 639-1 language is accepted as data, optionally with BCP-47
  script and region subtags (``zh-Hans``, ``pt-BR``); the two-letter list is
  ``data/iso639-1.txt`` (from Debian's iso-codes). An unknown code is a clear error.
* ``detect(texts)``: lingua (``lingua-language-detector``, a maintained n-gram detector whose
  models ship in the wheel: nothing is downloaded) gives each prompt its most likely language and
  a confidence; ``file_language`` turns them into one language per file and says when the file is
  mixed or the detector unsure.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from haven.errors import SuiteFormatError

CONFIDENT = 0.5
"""An item's detection counts only at or above this confidence (lingua's relative confidence)."""
MIXED_SHARE = 0.1
"""A file is reported as mixed when more than this share of confident items disagree with its language."""

_SUBTAGS = re.compile(r"^(?P<lang>[A-Za-z]{2})(?:-(?P<script>[A-Za-z]{4}))?(?:-(?P<region>[A-Za-z]{2}|\d{3}))?$")


@cache
def iso_639_1() -> dict[str, str]:
    """Two-letter code → English name, for every ISO 639-1 language."""
    text = resources.files("haven.audit").joinpath("data", "iso639-1.txt").read_text(encoding="utf-8")
    rows = (line.split("\t", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {code: name for code, name in rows}


def normalise_language(code: str) -> str:
    """'ZH-hans' → 'zh-Hans', 'pt-br' → 'pt-BR'; raises SuiteFormatError for anything else."""
    m = _SUBTAGS.match(code.strip())
    if not m or m["lang"].lower() not in iso_639_1():
        raise SuiteFormatError(
            f"Unknown language code {code!r}: use an ISO 639-1 code (en, zh, ar, sw, …), optionally with a script "
            "or region (zh-Hans, pt-BR)."
        )
    out = m["lang"].lower()
    if m["script"]:
        out += "-" + m["script"].title()
    if m["region"]:
        out += "-" + m["region"].upper()
    return out


def primary(code: str) -> str:
    return code.split("-", 1)[0].lower()


@cache
def _detector() -> Any:
    from lingua import LanguageDetectorBuilder

    # All of lingua's languages, models loaded lazily (only those a text needs), so the first file costs a few
    # seconds and the rest little.
    return LanguageDetectorBuilder.from_all_languages().build()


@dataclass(frozen=True)
class Detection:
    language: str | None
    """ISO 639-1 code of the most likely language, None when lingua recognises none."""
    confidence: float


def detect(texts: Sequence[str]) -> list[Detection]:
    """The most likely language of each text, with lingua's confidence (0 … 1)."""
    if not texts:
        return []
    values = _detector().compute_language_confidence_values_in_parallel(list(texts))
    out = []
    for ranked in values:
        if not ranked or ranked[0].value <= 0:
            out.append(Detection(None, 0.0))
        else:
            out.append(Detection(ranked[0].language.iso_code_639_1.name.lower(), float(ranked[0].value)))
    return out


@dataclass(frozen=True)
class FileLanguage:
    language: str | None
    """The language of the file's prompts taken together; None when lingua recognises none."""
    confidence: float
    """lingua's confidence in ``language`` for the prompts taken together (short prompts alone score low)."""
    disagreeing: list[int] = field(default_factory=list)
    """Indexes of items confidently (≥ CONFIDENT) detected as another language than ``language``."""

    @property
    def unsure(self) -> bool:
        return self.language is None or self.confidence < CONFIDENT

    def mixed(self, total: int) -> bool:
        return len(self.disagreeing) > MIXED_SHARE * total


SAMPLE_CHARS = 20_000


def file_language(texts: Sequence[str], detections: Sequence[Detection]) -> FileLanguage:
    """One language for a file and the items that disagree with it.

    The language is the most common per-item detection (each prompt one vote, so a few prompts in a
    strongly marked script cannot outvote the rest); its confidence is lingua's on the agreeing prompts
    joined (a bounded sample), because short prompts alone score low even when the guess is right.
    """
    votes = Counter(d.language for d in detections if d.language)
    if not votes:
        return FileLanguage(None, 0.0, [])
    language = votes.most_common(1)[0][0]
    joined, size = [], 0
    for text, d in zip(texts, detections, strict=True):
        if d.language == language:
            joined.append(text)
            size += len(text)
            if size >= SAMPLE_CHARS:
                break
    (whole,) = detect(["\n".join(joined)])
    confidence = whole.confidence if whole.language == language else 0.0
    disagreeing = [
        i for i, d in enumerate(detections) if d.language and d.language != language and d.confidence >= CONFIDENT
    ]
    return FileLanguage(language, confidence, disagreeing)
