"""Integers within bounds as GBNF: the decimal digit strings of every integer in a range, and nothing else.

The classic range-to-regex construction: split [lo, hi] by digit count, then by leading digit,
so each piece is a fixed prefix followed by free digits. No leading zeros, no ``-0``; magnitudes
are capped at :data:`MAX_DIGITS` digits when a side is unbounded (as llama.cpp's json.gbnf does),
so a small model cannot run away in digits.
"""

from __future__ import annotations

MAX_DIGITS = 16


def _same_length(lo: str, hi: str) -> list[str]:
    """Alternatives (GBNF sequences) matching the digit strings from ``lo`` to ``hi``, same length."""
    if lo == hi:
        return [f'"{lo}"']
    if len(lo) == 1:
        return [f"[{lo}-{hi}]"]
    if lo[0] == hi[0]:
        return [f'"{lo[0]}" {rest}' for rest in _same_length(lo[1:], hi[1:])]
    n = len(lo) - 1
    out: list[str] = []
    first_lo, first_hi = int(lo[0]), int(hi[0])
    if lo[1:] == "0" * n:
        mid_lo = first_lo
    else:
        mid_lo = first_lo + 1
        out += [f'"{lo[0]}" {rest}' for rest in _same_length(lo[1:], "9" * n)]
    mid_hi = first_hi if hi[1:] == "9" * n else first_hi - 1
    if mid_lo <= mid_hi:
        head = f'"{mid_lo}"' if mid_lo == mid_hi else f"[{mid_lo}-{mid_hi}]"
        out.append(f"{head} [0-9]{{{n}}}" if n > 1 else f"{head} [0-9]")
    if mid_hi != first_hi:
        out += [f'"{hi[0]}" {rest}' for rest in _same_length("0" * n, hi[1:])]
    return out


def unsigned_range(lo: int, hi: int | None) -> list[str]:
    """Alternatives for the non-negative integers ``lo``..``hi`` (None: up to MAX_DIGITS digits)."""
    top = hi if hi is not None else max(10**MAX_DIGITS - 1, lo)
    out: list[str] = []
    for n in range(len(str(lo)), len(str(top)) + 1):
        a = max(lo, 10 ** (n - 1) if n > 1 else 0)
        b = min(top, 10**n - 1)
        if a <= b:
            out += _same_length(str(a), str(b))
    return out


def integer_range(lo: int | None, hi: int | None) -> list[str]:
    """Alternatives for the integers in [lo, hi] (either side may be open)."""
    out: list[str] = []
    if hi is None or hi >= 0:
        out += unsigned_range(max(lo, 0) if lo is not None else 0, hi)
    if lo is None or lo < 0:
        m_lo = max(1, -hi) if hi is not None else 1
        m_hi = -lo if lo is not None else None
        if m_hi is None or m_lo <= m_hi:
            out += [f'"-" {alt}' for alt in unsigned_range(m_lo, m_hi)]
    return out
