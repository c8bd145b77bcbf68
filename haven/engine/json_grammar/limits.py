"""Limits on grammars, checked before llama.cpp ever sees one (a 400 naming the limit, never a crash).

llama.cpp's GBNF parser recurses once per nested parenthesis (20,000 of them overflow the C stack),
copies ``x{n}`` n times and turns ``x{0,n}`` into a chain of n rules; its sampler keeps a stack per
open alternative. These bounds keep every grammar Haven hands it far from those cliffs.
"""

from __future__ import annotations

from dataclasses import dataclass

from haven.errors import GrammarError


@dataclass(frozen=True)
class GrammarLimits:
    max_schema_depth: int = 100
    """Nesting of the JSON schema document (objects and arrays inside each other)."""
    max_schema_nodes: int = 5000
    """Values (objects, arrays, strings, numbers…) in the schema document: the meta-schema check alone
    costs about half a millisecond per value."""
    max_gbnf_bytes: int = 256 * 1024
    """Size of a grammar's text, whether user-supplied or compiled from a schema."""
    max_gbnf_depth: int = 64
    """Parenthesis nesting in GBNF text."""
    max_rules: int = 4096
    """Rules in one grammar."""
    max_elements: int = 200_000
    """Grammar elements after llama.cpp expands repetitions (``x{n}`` is n copies)."""
    max_repetition: int = 2000
    """Largest count in a ``{m,n}`` of user-supplied GBNF (Haven's compiler splits long ones itself)."""
    max_length: int = 100_000
    """Largest minLength/maxLength/minItems/maxItems (and pattern repetition) a schema may ask for."""
    max_alternatives: int = 256
    """Branches of anyOf/oneOf/type/enum, after allOf distributes over them."""
    max_pattern_length: int = 1000
    """Characters in one ``pattern``."""
    max_compile_seconds: float = 2.0
    """Wall time the schema compiler may spend (checked as it goes)."""


DEFAULT_LIMITS = GrammarLimits()


def limit_error(what: str, value: int | float | str, limit: str, bound: int | float, *, param: str) -> GrammarError:
    """The one wording of a limit refusal: names the limit, the value and the bound."""
    return GrammarError(f"{what} exceeds the limit {limit} = {bound} (got {value}).", param=param)
