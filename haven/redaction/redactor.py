"""Replace detected values with typed placeholders, and put the originals back into replies.

One :class:`Redactor` serves one exchange (a request and its reply, or one conversation): the same value gets
the same placeholder everywhere in it (``[EMAIL_1]`` in the system prompt and in the third user turn), so the
remote model can still refer to "the address above". Placeholders the model writes back are restored by
:meth:`Redactor.restore`, or chunk by chunk by a :class:`StreamRestorer`, which holds back a possible
placeholder cut in two by a chunk boundary. Text the *user* typed that already looks like a placeholder is
left alone on the way back (only placeholders this redactor issued are restored).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from haven.redaction.detectors import Detector, find_spans
from haven.redaction.plugins import active_detectors

_PLACEHOLDER = re.compile(r"\[([A-Z][A-Z_]*)_(\d{1,6})\]")
_LONGEST_PLACEHOLDER = 32  # "[CN_RESIDENT_ID_999999]" and then some


@dataclass(frozen=True)
class Redaction:
    text: str
    counts: Mapping[str, int]
    """Values replaced in this text, per kind (what goes to the security log: never the values)."""


@dataclass
class Redactor:
    detectors: Sequence[Detector] = field(default_factory=active_detectors)
    """Haven's detectors and any plugged in (:mod:`haven.redaction.plugins`)."""
    _by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    _by_placeholder: dict[str, str] = field(default_factory=dict)
    _next: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    """Every replacement this redactor made, per kind."""

    def _placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self._by_value:
            self._next[kind] += 1
            placeholder = f"[{kind}_{self._next[kind]}]"
            self._by_value[key] = placeholder
            self._by_placeholder[placeholder] = value
        return self._by_value[key]

    def redact(self, text: str) -> Redaction:
        spans = find_spans(text, self.detectors)
        if not spans:
            return Redaction(text, {})
        parts: list[str] = []
        cursor = 0
        counts: Counter[str] = Counter()
        for span in spans:
            parts.append(text[cursor : span.start])
            parts.append(self._placeholder(span.kind, span.value))
            counts[span.kind] += 1
            cursor = span.end
        parts.append(text[cursor:])
        self.counts.update(counts)
        return Redaction("".join(parts), dict(counts))

    def restore(self, text: str) -> str:
        """``text`` with every placeholder this redactor issued replaced by its original value."""
        return _PLACEHOLDER.sub(lambda m: self._by_placeholder.get(m.group(0), m.group(0)), text)

    def stream_restorer(self) -> StreamRestorer:
        return StreamRestorer(self)


class StreamRestorer:
    """Restore placeholders in a streamed reply: ``feed`` each chunk, then ``flush`` at the end.

    A trailing ``[`` that could still grow into a placeholder is held back (at most a few dozen characters),
    so a placeholder split across two chunks is restored whole and the user never sees half of one."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held = ""

    def feed(self, chunk: str) -> str:
        text = self._held + chunk
        cut = text.rfind("[")
        if cut != -1 and len(text) - cut < _LONGEST_PLACEHOLDER and "]" not in text[cut:] and _could_grow(text[cut:]):
            self._held, text = text[cut:], text[:cut]
        else:
            self._held = ""
        return self._redactor.restore(text)

    def flush(self) -> str:
        text, self._held = self._held, ""
        return self._redactor.restore(text)


def _could_grow(tail: str) -> bool:
    """Whether ``tail`` (starting at "[") is a prefix of some placeholder."""
    return re.fullmatch(r"\[(?:[A-Z][A-Z_]*(?:_\d{0,6})?)?", tail) is not None
