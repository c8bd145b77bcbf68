"""A non-recursive scanner that bounds GBNF text before llama.cpp's (recursive) parser sees it.

It reads the text once, left to right, with an explicit depth counter instead of recursion, and
refuses (GrammarError naming the limit) a grammar that is too big, nests parentheses too deeply,
has too many rules, repeats with a count over ``max_repetition``, or would expand past
``max_elements`` once llama.cpp copies its repetitions (``x{n}`` is n copies of x, ``x{m,n}``
also adds n-m rules). It does not judge the grammar's meaning: llama.cpp still parses it and a
grammar it rejects is a 400 too.
"""

from __future__ import annotations

import re

from haven.engine.json_grammar.limits import DEFAULT_LIMITS, GrammarLimits, limit_error
from haven.errors import GrammarError

_NAME = re.compile(r"[a-zA-Z0-9_-]+")
_DEFINE = re.compile(r"[a-zA-Z0-9_-]+[ \t]*::=")
_COUNT = re.compile(r"\{\s*(\d{1,9})?\s*(,)?\s*(\d{1,9})?\s*\}")


def check_gbnf(text: str, limits: GrammarLimits = DEFAULT_LIMITS, *, param: str = "grammar") -> None:
    """Raise GrammarError when ``text`` is over any limit (see module doc); return if it is within all."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_gbnf_bytes:
        raise limit_error("The grammar's size", f"{size} bytes", "max_gbnf_bytes", limits.max_gbnf_bytes, param=param)
    if "\x00" in text:
        raise GrammarError("The grammar contains a NUL character.", param=param)
    i, n = 0, len(text)
    depth = 0
    rules = 0
    elements = 0
    last = 0  # size of the last symbol (what a repetition copies)
    defined: set[str] = set()
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        define = _DEFINE.match(text, i)
        if define:
            if depth:
                raise GrammarError(f"The grammar has an unclosed '(' before offset {i}.", param=param)
            name = _NAME.match(text, i)
            assert name
            defined.add(name.group())
            rules += 1
            i, last = define.end(), 0
        elif c in '"[':
            i, last = _skip_quoted(text, i, '"' if c == '"' else "]", param=param)
        elif c == "(":
            depth += 1
            if depth > limits.max_gbnf_depth:
                raise limit_error(
                    "The grammar's parenthesis nesting",
                    f"more than {limits.max_gbnf_depth}",
                    "max_gbnf_depth",
                    limits.max_gbnf_depth,
                    param=param,
                )
            rules += 1  # llama.cpp makes each group a rule
            i, last = i + 1, 0
        elif c == ")":
            depth -= 1
            if depth < 0:
                raise GrammarError(f"The grammar has an unmatched ')' at offset {i}.", param=param)
            i, last = i + 1, 1
        elif c in "*+?":
            rules += 1
            elements += 2 * max(last, 1)
            i += 1
        elif c == "{":
            m = _COUNT.match(text, i)
            if not m or (m.group(1) is None and m.group(3) is None):
                raise GrammarError(f"The grammar has a malformed repetition at offset {i}.", param=param)
            lo = int(m.group(1) or 0)
            hi = lo if not m.group(2) else (int(m.group(3)) if m.group(3) else None)
            top = max(lo, hi if hi is not None else lo + 1)
            if top > limits.max_repetition:
                raise limit_error(
                    "A repetition count in the grammar", top, "max_repetition", limits.max_repetition, param=param
                )
            rules += (hi - lo) if hi is not None else 1
            elements += max(last, 1) * (top + 1)
            i = m.end()
        elif c == "|":
            i, last = i + 1, 0
        elif c == ".":
            i, last = i + 1, 1
            elements += 1
        elif _NAME.match(text, i):
            name = _NAME.match(text, i)
            assert name
            i, last = name.end(), 1
        else:
            raise GrammarError(f"The grammar has an unexpected character {c!r} at offset {i}.", param=param)
        elements += last if c not in "*+?{" else 0
        if rules > limits.max_rules:
            raise limit_error(
                "The grammar's rule count", f"more than {limits.max_rules}", "max_rules", limits.max_rules, param=param
            )
        if elements > limits.max_elements:
            raise limit_error(
                "The grammar's expanded size",
                f"more than {limits.max_elements} elements",
                "max_elements",
                limits.max_elements,
                param=param,
            )
    if depth:
        raise GrammarError("The grammar has an unclosed '('.", param=param)
    if "root" not in defined:
        raise GrammarError("The grammar has no 'root' rule.", param=param)


def _skip_quoted(text: str, start: int, close: str, *, param: str) -> tuple[int, int]:
    """(offset after the literal or class opening at ``start``, its element count), escapes honoured."""
    j, count = start + 1, 0
    while j < len(text) and text[j] != close:
        j += 2 if text[j] == "\\" else 1
        count += 1
    if j >= len(text):
        what = "string" if close == '"' else "character class"
        raise GrammarError(f"The grammar has an unterminated {what} at offset {start}.", param=param)
    return j + 1, count + 1
