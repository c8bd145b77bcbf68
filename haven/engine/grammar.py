"""JSON schema → GBNF, and the bounds on every grammar, for constrained output.

Used for OpenAI ``response_format`` (json_object / json_schema), Ollama ``format``, forced
tool-call arguments and the ``grammar`` extension. The compiler is Haven's own
(:mod:`haven.engine.json_grammar`): the grammar admits only valid JSON that matches the schema,
and any keyword it cannot enforce is a :class:`~haven.errors.GrammarError` (HTTP 400) naming the
keyword, never silently ignored. Every grammar — compiled or user-supplied — passes
:func:`bounded_gbnf` (size, parenthesis depth, rule count, repetition, expanded size) before
llama.cpp parses it, because llama.cpp's parser recurses per nesting level and expands
repetitions by copying. See docs/structured-output.md for the supported subset and the limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from haven.engine.json_grammar.limits import DEFAULT_LIMITS, GrammarLimits
from haven.engine.json_grammar.scan import check_gbnf
from haven.engine.json_grammar.schema import ANNOTATIONS, SUPPORTED, check_schema, compile_schema, schema_depth_ok

__all__ = [
    "ANNOTATIONS",
    "DEFAULT_LIMITS",
    "JSON_OBJECT_GBNF",
    "SUPPORTED_KEYWORDS",
    "UNSUPPORTED_KEYWORDS",
    "GrammarLimits",
    "bounded_gbnf",
    "check_json_schema",
    "check_json_schema_depth",
    "json_schema_to_gbnf",
]

SUPPORTED_KEYWORDS = SUPPORTED
# Known JSON-Schema keywords the compiler refuses (any keyword outside SUPPORTED_KEYWORDS and the
# annotations is refused too; this list is for documentation and error-message tests).
UNSUPPORTED_KEYWORDS = frozenset(
    {
        "not",
        "if",
        "then",
        "else",
        "dependentSchemas",
        "dependentRequired",
        "dependencies",
        "patternProperties",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
        "contains",
        "minContains",
        "maxContains",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "multipleOf",
        "$dynamicRef",
        "$recursiveRef",
    }
)


def json_schema_to_gbnf(
    schema: Mapping[str, Any] | bool, *, limits: GrammarLimits = DEFAULT_LIMITS, param: str = "json_schema"
) -> str:
    """GBNF text whose root accepts only JSON documents valid against ``schema`` (GrammarError if it
    uses an unsupported keyword, is invalid, or is over a limit).

    An empty schema ``{}`` means "any JSON object" here, as the engine's contract says
    (:attr:`SamplingParams.json_schema`): Ollama ``format: "json"`` and OpenAI ``json_object`` send it.
    ``True`` is any JSON value."""
    if isinstance(schema, Mapping) and not schema:
        schema = {"type": "object"}
    return bounded_gbnf(compile_schema(schema, limits=limits, param=param), limits=limits, param=param)


def check_json_schema(schema: Any, *, param: str = "json_schema", limits: GrammarLimits = DEFAULT_LIMITS) -> None:
    """Validate ``schema`` against the meta-schema without recursing past ``max_schema_depth``
    (a schema nested 150 deep is a 400, not a RecursionError). Use it wherever a request's schema is
    checked before generation."""
    check_schema(schema, limits=limits, param=param)


def check_json_schema_depth(schema: Any, *, param: str = "json_schema", limits: GrammarLimits = DEFAULT_LIMITS) -> None:
    """GrammarError (400) when ``schema`` is nested deeper than ``max_schema_depth`` or larger than
    ``max_schema_nodes``; call it before any recursive or costly validation (``jsonschema``'s meta-schema
    check overflows Python's stack near 100 levels and takes seconds on a 10,000-value schema)."""
    schema_depth_ok(schema, limits, param=param)


def bounded_gbnf(text: str, *, limits: GrammarLimits = DEFAULT_LIMITS, param: str = "grammar") -> str:
    """``text`` unchanged when it is within every grammar limit; GrammarError naming the limit otherwise."""
    check_gbnf(text, limits, param=param)
    return text


# Any JSON object (OpenAI json_object mode, Ollama format "json"), bounded whitespace included.
JSON_OBJECT_GBNF = json_schema_to_gbnf({"type": "object"})
