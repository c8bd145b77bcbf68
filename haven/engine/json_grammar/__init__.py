"""Haven's own JSON schema → GBNF compiler and the bounds every grammar passes before llama.cpp.

- :mod:`.limits` — the limits (nesting depth, size, rule count, repetition, compile time), one dataclass.
- :mod:`.gbnf` — writing GBNF: literals, character classes, shallow bounded repetition, the rule set.
- :mod:`.scan` — a non-recursive scanner that bounds user-supplied GBNF text before llama.cpp parses it.
- :mod:`.schema` — the compiler (types, enum/const, objects, arrays, anyOf/oneOf/allOf, $ref…).
- :mod:`.numbers`, :mod:`.formats`, :mod:`.regex` — integer ranges, string formats, ``pattern``.

:mod:`haven.engine.grammar` is the public entry point; this package is its implementation.
"""
