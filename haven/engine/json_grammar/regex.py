"""``pattern`` (a regular-expression subset) → GBNF for the *encoded* contents of a JSON string.

Supported: literal characters; ``.``; escapes ``\\d \\D \\w \\W \\s \\S``, ``\\n \\r \\t \\f \\v``,
``\\xHH``, ``\\uHHHH`` and escaped metacharacters; classes ``[...]`` / ``[^...]`` with ranges;
groups ``(...)``, ``(?:...)``, ``(?P<name>...)``; alternation ``|``; quantifiers ``* + ? {n} {n,}
{n,m}`` (lazy forms too: they match the same strings); ``^`` at the start and ``$`` at the end.
Without ``^`` (or ``$``) the pattern may match anywhere, as JSON Schema says (``re.search``).
Refused with an error naming the construct: backreferences, lookarounds, ``\\b``/``\\B``, inline
flags, ``^``/``$`` elsewhere.

A regex speaks of decoded characters; the grammar writes JSON text. Each character set becomes its
raw characters (minus ``"``, ``\\`` and control characters) plus the escapes of the ones that need
them (``\\"``, ``\\\\``, ``\\n``, ``\\u001b``…), so the output decodes to a string that matches.
"""

from __future__ import annotations

from haven.engine.json_grammar.gbnf import RuleSet, class_char, literal
from haven.errors import GrammarError

_MAX_CP = 0x10FFFF
Ranges = list[tuple[int, int]]

_DIGIT: Ranges = [(0x30, 0x39)]
_WORD: Ranges = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_SPACE: Ranges = [(0x09, 0x0D), (0x20, 0x20)]
_SHORT_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


def _normalize(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _complement(ranges: Ranges) -> Ranges:
    out: Ranges = []
    start = 0
    for lo, hi in _normalize(ranges):
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= _MAX_CP:
        out.append((start, _MAX_CP))
    return out


def _subtract(ranges: Ranges, remove: Ranges) -> Ranges:
    keep = _complement(remove)
    out: Ranges = []
    for lo, hi in _normalize(ranges):
        for klo, khi in keep:
            a, b = max(lo, klo), min(hi, khi)
            if a <= b:
                out.append((a, b))
    return out


# Raw in a JSON string (RFC 8259): anything but '"', '\\', control characters and (unencodable) surrogates.
_NOT_RAW: Ranges = [(0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0xD800, 0xDFFF)]


def raw_class(excluded: str = "") -> str:
    """A *positive* class of the characters a JSON string may hold unescaped, minus ``excluded``.

    Positive, not ``[^...]``: llama.cpp matches a token that ends inside a multi-byte character against
    the range of code points it could still become, and a negated class refuses it when that range
    touches any excluded character — ``[^\\uD800-\\uDFFF]`` would refuse every Hangul syllable
    from U+D000 spelled byte by byte."""
    ranges = _subtract([(0, _MAX_CP)], _NOT_RAW + [(ord(c), ord(c)) for c in excluded])
    return "[" + _class_body(ranges) + "]"


def _class_body(ranges: Ranges) -> str:
    return "".join(
        class_char(chr(lo)) if lo == hi else f"{class_char(chr(lo))}-{class_char(chr(hi))}" for lo, hi in ranges
    )


def charset_gbnf(ranges: Ranges) -> str:
    """GBNF for the JSON encoding of one character from ``ranges`` (empty: GrammarError by caller)."""
    alts: list[str] = []
    raw = _subtract(ranges, _NOT_RAW)
    if raw:
        alts.append(f"[{_class_body(raw)}]")
    for lo, hi in _normalize(ranges):
        for cp in range(max(lo, 0), min(hi, 0x7F) + 1):
            if cp in _SHORT_ESCAPES:
                alts.append(literal(_SHORT_ESCAPES[cp]))
            elif cp < 0x20:
                alts.append(literal(f"\\u{cp:04x}"))
    if not alts:
        return ""
    return alts[0] if len(alts) == 1 else "(" + " | ".join(alts) + ")"


class _Parser:
    def __init__(self, pattern: str, rules: RuleSet, *, param: str, max_depth: int = 32) -> None:
        self.s = pattern
        self.i = 0
        self.rules = rules
        self.param = param
        self.max_depth = max_depth

    def error(self, what: str) -> GrammarError:
        return GrammarError(
            f"pattern {self.s!r}: {what} (at offset {self.i}) is not supported; see docs/structured-output.md.",
            param=self.param,
        )

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def alternation(self, depth: int) -> str:
        if depth > self.max_depth:
            raise self.error(f"group nesting deeper than {self.max_depth}")
        branches = [self.sequence(depth)]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence(depth))
        if len(branches) == 1:
            return branches[0]
        return "(" + " | ".join(b or '""' for b in branches) + ")"

    def sequence(self, depth: int) -> str:
        items: list[str] = []
        while self.i < len(self.s) and self.peek() not in "|)":
            if self.peek() == "$" and self.i == len(self.s) - 1:
                break
            atom = self.atom(depth)
            items.append(self.quantified(atom))
        return " ".join(x for x in items if x)

    def quantified(self, atom: str) -> str:
        c = self.peek()
        if c not in ("*", "+", "?", "{") or (c == "{" and not self._is_counted()):
            return atom
        if c == "{":
            end = self.s.index("}", self.i)
            spec = self.s[self.i + 1 : end]
            self.i = end + 1
            lo_text, sep, hi_text = spec.partition(",")
            lo = int(lo_text or 0)
            hi = (int(hi_text) if hi_text else None) if sep else lo
        else:
            self.i += 1
            lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
        if self.peek() == "?":  # lazy: the same set of strings
            self.i += 1
        if self.peek() in ("*", "+", "{") and (self.peek() != "{" or self._is_counted()):
            raise self.error("a quantifier on a quantifier")
        if not atom:
            return ""
        rule = self.rules.add("pattern-atom", atom)
        return self.rules.repeat(rule, lo, hi, what="a pattern repetition")

    def _is_counted(self) -> bool:
        j = self.s.find("}", self.i)
        if j < 0:
            return False
        spec = self.s[self.i + 1 : j]
        lo, sep, hi = spec.partition(",")
        return bool(lo.isdigit() or (sep and not lo)) and (hi.isdigit() or not hi) and bool(spec)

    def atom(self, depth: int) -> str:
        c = self.peek()
        if c == "(":
            self.i += 1
            if self.s.startswith("?:", self.i):
                self.i += 2
            elif self.s.startswith("?P<", self.i):
                end = self.s.find(">", self.i)
                if end < 0:
                    raise self.error("an unterminated group name")
                self.i = end + 1
            elif self.peek() == "?":
                raise self.error("a lookaround, inline flag or special group")
            inner = self.alternation(depth + 1)
            if self.peek() != ")":
                raise self.error("an unbalanced parenthesis")
            self.i += 1
            return f"({inner})" if inner else ""
        if c == "[":
            return self._set(self._class())
        if c == ".":
            self.i += 1
            return self._set(_complement([(0x0A, 0x0A)]))
        if c == "\\":
            return self._set(self._escape(in_class=False))
        if c in "^$":
            raise self.error(f"an anchor {c!r} that is not at the pattern's start or end")
        if c in "*+?":
            raise self.error(f"a quantifier {c!r} with nothing to repeat")
        if c == ")":
            raise self.error("an unbalanced parenthesis")
        self.i += 1
        return self._set([(ord(c), ord(c))])

    def _set(self, ranges: Ranges) -> str:
        text = charset_gbnf(ranges)
        if not text:
            raise self.error("a character set that no JSON string character can match")
        return self.rules.add("pattern-char", text) if text.startswith("(") else text

    def _escape(self, *, in_class: bool) -> Ranges:
        self.i += 1
        c = self.peek()
        if not c:
            raise self.error("a trailing backslash")
        self.i += 1
        classes = {"d": _DIGIT, "w": _WORD, "s": _SPACE}
        if c in classes:
            return classes[c]
        if c.lower() in classes:
            return _complement(classes[c.lower()])
        simple = {"n": 0x0A, "r": 0x0D, "t": 0x09, "f": 0x0C, "v": 0x0B}
        if c in simple:
            return [(simple[c], simple[c])]
        if c in "xu":
            width = 2 if c == "x" else 4
            digits = self.s[self.i : self.i + width]
            if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise self.error(f"a malformed \\{c} escape")
            self.i += width
            cp = int(digits, 16)
            return [(cp, cp)]
        if c == "b" and in_class:
            return [(0x08, 0x08)]
        if c.isalnum():
            raise self.error(f"the escape \\{c}")
        return [(ord(c), ord(c))]

    def _class(self) -> Ranges:
        self.i += 1
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        ranges: Ranges = []
        first = True
        while True:
            c = self.peek()
            if not c:
                raise self.error("an unterminated character class")
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "[" and self.s.startswith("[:", self.i):
                raise self.error("a POSIX class")
            if c == "\\":
                item = self._escape(in_class=True)
            else:
                self.i += 1
                item = [(ord(c), ord(c))]
            single = len(item) == 1 and item[0][0] == item[0][1]
            if single and self.peek() == "-" and self.s[self.i + 1 : self.i + 2] not in ("]", ""):
                self.i += 1
                if self.peek() == "\\":
                    end = self._escape(in_class=True)
                else:
                    end = [(ord(self.peek()), ord(self.peek()))]
                    self.i += 1
                if not (len(end) == 1 and end[0][0] == end[0][1]):
                    raise self.error("a range ending in a class")
                if end[0][0] < item[0][0]:
                    raise self.error("a reversed range")
                ranges.append((item[0][0], end[0][0]))
                continue
            ranges += item
        return _complement(ranges) if negate else _normalize(ranges)


def pattern_gbnf(pattern: str, rules: RuleSet, *, param: str) -> str:
    """GBNF for the contents (between the quotes) of JSON strings that ``re.search(pattern, s)`` accepts."""
    if len(pattern) > rules.limits.max_pattern_length:
        raise GrammarError(
            f"pattern has {len(pattern)} characters, over the limit max_pattern_length = "
            f"{rules.limits.max_pattern_length}.",
            param=param,
        )
    parser = _Parser(pattern, rules, param=param)
    anchored_start = pattern.startswith("^")
    if anchored_start:
        parser.i = 1
    body = parser.alternation(0)
    anchored_end = parser.peek() == "$"
    if anchored_end:
        parser.i += 1
    if parser.i != len(pattern):
        raise parser.error("an unbalanced parenthesis or misplaced anchor")
    anything = rules.add("pattern-any", "json-char*")
    parts = (
        ([] if anchored_start else [anything]) + [f"({body})" if body else ""] + ([] if anchored_end else [anything])
    )
    return " ".join(p for p in parts if p)
