"""Writing GBNF: literals, character classes, shallow bounded repetition and a bounded rule set.

Repetition is where llama.cpp's grammar cliffs are: ``x{n}`` becomes n copies of ``x`` and
``x{0,n}`` a chain of n nested optional rules. :meth:`RuleSet.repeat` keeps both small for any
length: an exact count is written in base 32 over helper rules (``x32 ::= x{32}``,
``x1024 ::= x32{32}``…), so its size grows with log n; an optional span of k is split into
``chunk{0,q-1} x{0,K-1} | chunk{q} x{0,r}`` with K ≈ √k, so its depth grows with √k. The two
branches cover disjoint lengths, so the sampler never carries more than a few stacks.
"""

from __future__ import annotations

import math
import re
import time

from haven.engine.json_grammar.limits import GrammarLimits, limit_error
from haven.errors import GrammarError

_INLINE_EXACT = 32
"""Counts up to this are written as ``x{n}`` directly (n flat copies)."""
_BASE = 32
_INLINE_OPTIONAL = 32
"""Optional spans up to this are written as ``x{0,k}`` directly (k nested rules)."""


def _escape_char(ch: str, specials: str) -> str:
    code = ord(ch)
    if ch in specials:
        return "\\" + ch
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02X}"
    if code < 0x7F:
        return ch
    # everything else as an escape: the grammar text stays ASCII (no raw C1 controls or lone surrogates)
    if code <= 0xFF:
        return f"\\x{code:02X}"
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def literal(text: str) -> str:
    """A GBNF string literal matching ``text`` exactly."""
    return '"' + "".join(_escape_char(c, '"\\') for c in text) + '"'


def class_char(ch: str) -> str:
    """``ch`` written safely inside ``[...]``."""
    return _escape_char(ch, ']\\^-["')


_NAME_BAD = re.compile(r"[^a-zA-Z0-9-]+")
_PRIMITIVE_NAMES = frozenset({"root", "ws", "key-char"})
"""Names a compiled rule must never take (``root`` is written by :meth:`RuleSet.text`; the
schema compiler's shared rules are all named ``json-…``, and hints never start with that)."""


class RuleSet:
    """The rules of one grammar being built, with the size, count and time limits enforced as it grows."""

    def __init__(self, limits: GrammarLimits, *, param: str) -> None:
        self.limits = limits
        self.param = param
        self.rules: dict[str, str] = {}
        self._by_body: dict[str, str] = {}
        self._reserved: set[str] = set()
        self._counters: dict[str, int] = {}
        self._size = 0
        self._deadline = time.monotonic() + limits.max_compile_seconds

    # --- rules ----------------------------------------------------------------------------
    def fresh_name(self, hint: str) -> str:
        base = _NAME_BAD.sub("-", hint).strip("-")[:40] or "r"
        name = base
        while name in self.rules or name in self._reserved or name in _PRIMITIVE_NAMES:
            self._counters[base] = self._counters.get(base, 1) + 1
            name = f"{base}-{self._counters[base]}"
        return name

    def reserve(self, hint: str) -> str:
        """A name for a rule whose body comes later (a ``$ref`` being compiled, possibly recursive)."""
        name = self.fresh_name(hint)
        self._reserved.add(name)
        return name

    def define(self, name: str, body: str) -> str:
        self._check(len(name) + len(body) + 5)
        self.rules[name] = body
        self._reserved.discard(name)
        return name

    def add(self, hint: str, body: str) -> str:
        """A rule for ``body`` (an existing one if the same body was added before); its name."""
        known = self._by_body.get(body)
        if known is not None:
            return known
        name = self.define(self.fresh_name(hint), body)
        self._by_body[body] = name
        return name

    def _check(self, grow: int) -> None:
        self._size += grow
        if self._size > self.limits.max_gbnf_bytes:
            raise limit_error(
                "The grammar compiled from this schema",
                f"more than {self.limits.max_gbnf_bytes} bytes",
                "max_gbnf_bytes",
                self.limits.max_gbnf_bytes,
                param=self.param,
            )
        if len(self.rules) + 1 > self.limits.max_rules:
            raise limit_error(
                "The number of grammar rules",
                len(self.rules) + 1,
                "max_rules",
                self.limits.max_rules,
                param=self.param,
            )
        self.tick()

    def tick(self) -> None:
        if time.monotonic() > self._deadline:
            raise GrammarError(
                f"Compiling this schema took longer than the limit max_compile_seconds = "
                f"{self.limits.max_compile_seconds:g}; simplify it.",
                param=self.param,
            )

    def text(self, root: str) -> str:
        lines = [f"root ::= {root}"]
        lines += [f"{name} ::= {body}" for name, body in self.rules.items()]
        return "\n".join(lines) + "\n"

    # --- repetition -----------------------------------------------------------------------
    def repeat(self, atom: str, lo: int, hi: int | None, *, what: str = "repetition") -> str:
        """A sequence matching ``lo``..``hi`` (None: unbounded) occurrences of ``atom`` (a rule name or
        a parenthesised expression), shallow for any count (see module doc). May be ``""``."""
        for value in (lo, hi):
            if value is not None and value > self.limits.max_length:
                raise limit_error(what, value, "max_length", self.limits.max_length, param=self.param)
        if hi is not None and hi < lo:
            raise GrammarError(f"{what}: the maximum {hi} is below the minimum {lo}.", param=self.param)
        parts = [self._exact(atom, lo)]
        if hi is None:
            parts.append(f"{atom}*")
        else:
            parts.append(self._optional(atom, hi - lo))
        return " ".join(p for p in parts if p)

    def _exact(self, atom: str, n: int) -> str:
        if n == 0:
            return ""
        if n == 1:
            return atom
        if n <= _INLINE_EXACT:
            return f"{atom}{{{n}}}"
        digits: list[int] = []
        while n:
            n, d = divmod(n, _BASE)
            digits.append(d)
        levels = [atom]
        for _ in range(len(digits) - 1):
            levels.append(self.add(f"{_hint(atom)}-x{_BASE}", f"{levels[-1]}{{{_BASE}}}"))
        out = []
        for level, d in zip(reversed(levels), reversed(digits), strict=True):
            if d == 1:
                out.append(level)
            elif d > 1:
                out.append(f"{level}{{{d}}}")
        return " ".join(out)

    def _optional(self, atom: str, k: int) -> str:
        if k == 0:
            return ""
        if k <= _INLINE_OPTIONAL:
            return f"{atom}?" if k == 1 else f"{atom}{{0,{k}}}"
        size = math.isqrt(k - 1) + 1  # ceil(sqrt(k)), so q = k // size ≤ size
        q, r = divmod(k, size)
        chunk = self.add(f"{_hint(atom)}-x{size}", f"{atom}{{{size}}}")
        short = " ".join(p for p in (f"{chunk}{{0,{q - 1}}}" if q > 1 else "", f"{atom}{{0,{size - 1}}}") if p)
        full = " ".join(p for p in (f"{chunk}{{{q}}}" if q > 1 else chunk, f"{atom}{{0,{r}}}" if r else "") if p)
        return self.add(f"{_hint(atom)}-upto{k}", f"{short} | {full}")


def _hint(atom: str) -> str:
    return atom if re.fullmatch(r"[a-zA-Z0-9-]+", atom) else "rep"
