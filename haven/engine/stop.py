"""Stop strings matched across token boundaries.

Text arrives in arbitrary pieces (one token's worth at a time). The matcher emits text as
soon as it cannot be the start of a stop string, holds back the longest suffix that could
still grow into one, and reports the stop that ends the generation. The result is the same
however the text is split: the earliest-starting stop in the whole text wins (at one start,
the shortest), which is why a complete match is deferred while a stop that began earlier is
still incomplete (llama.cpp's server checks each piece on its own and can pick a later one).
"""

from __future__ import annotations

from collections.abc import Sequence

from haven.errors import InvalidRequestError

MAX_STOPS = 16
MAX_STOP_CHARS = 1000


def validate_stops(stops: object) -> tuple[str, ...]:
    """Check a user-supplied stop list; return it as a tuple or raise InvalidRequestError."""
    if isinstance(stops, str):
        stops = [stops]
    if not isinstance(stops, list | tuple):
        raise InvalidRequestError(
            f"'stop' must be a string or a list of strings, not {type(stops).__name__}.", param="stop"
        )
    if len(stops) > MAX_STOPS:
        raise InvalidRequestError(f"At most {MAX_STOPS} stop strings are allowed, got {len(stops)}.", param="stop")
    for stop in stops:
        if not isinstance(stop, str):
            raise InvalidRequestError(
                f"Stop sequences must be strings, got {type(stop).__name__} ({stop!r}).", param="stop"
            )
        if not stop:
            raise InvalidRequestError("Stop sequences must not be empty strings.", param="stop")
        if len(stop) > MAX_STOP_CHARS:
            raise InvalidRequestError(
                f"Stop sequences may be at most {MAX_STOP_CHARS} characters long, got one of {len(stop)}.",
                param="stop",
            )
    return tuple(stops)


class StopMatcher:
    """Finds the first stop string in streamed text; emits only text that precedes any stop."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = validate_stops(stops)
        self._held = ""
        self.matched: str | None = None
        """The stop that ended the text (set by :meth:`push` or :meth:`flush`)."""

    def push(self, text: str, *, armed: bool = True) -> tuple[str, str | None]:
        """Add text; return (text safe to emit now, matched stop or None).

        After a match everything further is swallowed and the matched stop is returned again. Unarmed
        (``min_tokens`` not yet generated, as vLLM does it) no stop can match, but a tail that may begin one is
        still held, so a stop completed by the first armed text is found.
        """
        if self.matched is not None:
            return "", self.matched
        if not self.stops:
            return text, None
        buf = self._held + text
        match = self._earliest_match(buf) if armed else None
        pending = self._earliest_partial(buf, before=match[0] if match else len(buf))
        if match is not None and pending is None:
            start, stop = match
            self.matched = stop
            self._held = ""
            return buf[:start], stop
        keep_from = pending if pending is not None else len(buf)
        self._held = buf[keep_from:]
        return buf[:keep_from], None

    def flush(self, *, armed: bool = True) -> str:
        """End of text: emit what was held back (up to a stop that completed in it, when armed)."""
        buf, self._held = self._held, ""
        if self.matched is not None:
            return ""
        match = self._earliest_match(buf) if armed else None
        if match is not None:
            self.matched = match[1]
            return buf[: match[0]]
        return buf

    def _earliest_match(self, buf: str) -> tuple[int, str] | None:
        best: tuple[int, int, str] | None = None
        for stop in self.stops:
            pos = buf.find(stop)
            if pos >= 0 and (best is None or (pos, len(stop)) < best[:2]):
                best = (pos, len(stop), stop)
        return (best[0], best[2]) if best else None

    def _earliest_partial(self, buf: str, *, before: int) -> int | None:
        """First position < ``before`` where the rest of ``buf`` is a proper prefix of a stop."""
        longest = max(len(s) for s in self.stops)
        for pos in range(max(0, len(buf) - longest + 1), min(before, len(buf))):
            tail = buf[pos:]
            if any(len(tail) < len(s) and s.startswith(tail) for s in self.stops):
                return pos
        return None
