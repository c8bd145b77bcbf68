"""Splits generated text into reasoning (``<think>…</think>``) and visible content.

Works on streamed text: a tag may arrive split over several pieces, so the splitter holds
back a suffix that could still become the tag it is waiting for. Rules, as DeepSeek's API
presents R1 output:

- text between ``<think>`` and ``</think>`` is reasoning; everything else is content;
- when the prompt already opened ``<think>`` (``opened=True``), the text starts as reasoning;
- whitespace right after ``<think>`` and right after ``</think>`` is dropped (the templates put
  newlines there; clients should not see an answer that starts with blank lines);
- a ``<think>`` that appears after some content opens reasoning again (the text before it is
  content), and an unclosed think at the end is reasoning.

The result never depends on how the text was split into pieces.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["reasoning", "content"]
Segment = tuple[Kind, str]


class ReasoningSplitter:
    """Streaming ``<think>`` splitter; ``push`` returns (kind, text) segments in order."""

    def __init__(self, *, opened: bool = False, open_tag: str = "<think>", close_tag: str = "</think>") -> None:
        if not open_tag or not close_tag:
            raise ValueError("reasoning tags must be non-empty")
        self._open_tag = open_tag
        self._close_tag = close_tag
        self._in_reasoning = opened
        self._strip_leading = opened
        self._held = ""

    @property
    def in_reasoning(self) -> bool:
        return self._in_reasoning

    def push(self, text: str) -> list[Segment]:
        out: list[Segment] = []
        buf = self._held + text
        self._held = ""
        while buf:
            tag = self._close_tag if self._in_reasoning else self._open_tag
            pos = buf.find(tag)
            if pos >= 0:
                self._emit(out, buf[:pos])
                buf = buf[pos + len(tag) :]
                self._in_reasoning = not self._in_reasoning
                self._strip_leading = True
                continue
            keep = _partial_suffix_len(buf, tag)
            self._emit(out, buf[: len(buf) - keep])
            self._held = buf[len(buf) - keep :]
            break
        return out

    def flush(self) -> list[Segment]:
        out: list[Segment] = []
        held, self._held = self._held, ""
        self._emit(out, held)
        return out

    def _emit(self, out: list[Segment], text: str) -> None:
        if self._strip_leading:
            text = text.lstrip()
            if not text:
                return
            self._strip_leading = False
        if not text:
            return
        kind: Kind = "reasoning" if self._in_reasoning else "content"
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))


def _partial_suffix_len(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


def split_reasoning(text: str, *, opened: bool = False) -> tuple[str, str]:
    """(reasoning, content) of a complete, non-streamed generation."""
    splitter = ReasoningSplitter(opened=opened)
    parts = splitter.push(text) + splitter.flush()
    reasoning = "".join(t for kind, t in parts if kind == "reasoning")
    content = "".join(t for kind, t in parts if kind == "content")
    return reasoning, content
