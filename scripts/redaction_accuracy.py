"""Measure redaction precision and recall on the generated labelled set; rewrite the table in docs/sovereignty.md.

``python scripts/redaction_accuracy.py [--write]`` — prints the table; with --write, replaces the part of
docs/sovereignty.md between its redaction-accuracy markers (a test keeps that table current).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from haven.redaction import find_spans  # noqa: E402
from tests.support.pii_corpus import LANGUAGES, generate, national_address_texts, score  # noqa: E402

DOC = ROOT / "docs" / "sovereignty.md"
BEGIN, END = "<!-- redaction-accuracy:begin -->", "<!-- redaction-accuracy:end -->"


def table() -> str:
    texts = generate()
    scores = score(texts, lambda text: [(s.kind, s.start, s.end) for s in find_spans(text)])
    kinds = sorted({kind for kind, _ in scores})
    spans = sum(len(t.spans) for t in texts)
    distractors = sum(1 for t in texts if not t.spans)
    lines = [f"{spans} labelled spans and {distractors} distractor sentences "
             "(`tests/support/pii_corpus.py`, seed 7); precision / recall, exact span and type:", "",
             "| type | " + " | ".join(LANGUAGES) + " |", "| --- |" + " --- |" * len(LANGUAGES)]
    for kind in kinds:
        cells = []
        for language in LANGUAGES:
            s = scores.get((kind, language))
            cells.append("—" if s is None else f"{s.precision:.3f} / {s.recall:.3f}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += ["", "Addresses in formats the ADDRESS detector does not claim (`NATIONAL_ADDRESSES`: each language's own "
              "national format; for en, Irish, Australian, New Zealand, Kenyan and Ugandan ones), masked whole / "
              "in part / missed:", "", "| | " + " | ".join(LANGUAGES) + " |", "| --- |" + " --- |" * len(LANGUAGES)]
    outcome = {language: [0, 0, 0] for language in LANGUAGES}
    for text in national_address_texts():
        _, start, end = text.spans[0]
        found = [s for s in find_spans(text.text) if s.kind == "ADDRESS" and s.start < end and start < s.end]
        whole = any(s.start <= start and s.end >= end for s in found)
        outcome[text.language][0 if whole else 1 if found else 2] += 1
    lines.append("| national formats | " + " | ".join("{} / {} / {}".format(*outcome[lang]) for lang in LANGUAGES)
                 + " |")
    return "\n".join(lines)


def render(doc: str) -> str:
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    if "--write" in sys.argv:
        DOC.write_text(render(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(table())
