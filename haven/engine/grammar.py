"""JSON schema → GBNF grammar, for JSON-constrained output (``response_format``, Ollama ``format``).

The schema is first checked against the JSON-Schema meta-schema (so a typo such as
``{"type": "strng"}`` is a clear 400, not a silently unconstrained answer), then keywords the
grammar cannot enforce are rejected, and only then is it converted by llama.cpp's converter as
shipped in llama-cpp-python (``llama_cpp.llama_grammar.SchemaConverter``, a port of
llama.cpp's ``json-schema-to-grammar.py``).

Numeric bounds (``minimum``, ``maximum``, ``multipleOf``…) are accepted but not enforced: the
output is still a number of the right type. Keywords that change *which shapes* are valid
(``not``, ``if``/``then``/``else``, ``patternProperties``…) are refused, because silently
ignoring them would produce output that violates the schema the client asked for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsonschema
import jsonschema.exceptions
from llama_cpp.llama_grammar import SchemaConverter

from haven.errors import GrammarError

# A JSON object with bounded whitespace (unbounded whitespace lets a small model "run away"
# in blank lines until max_tokens). Same shape as llama.cpp's grammars/json.gbnf.
JSON_OBJECT_GBNF = r"""root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws     ::= | " " | "\n" [ \t]{0,20}
"""

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
        "$dynamicRef",
        "$recursiveRef",
    }
)
# Keywords whose value is a schema / a list or map of schemas: where the walk descends.
_SUBSCHEMA = ("items", "additionalProperties", "additionalItems")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")


def json_schema_to_gbnf(schema: Mapping[str, Any]) -> str:
    """GBNF text whose root accepts exactly the JSON documents of ``schema`` (see module doc)."""
    if schema is True:
        return _convert({"type": ["object", "array", "string", "number", "boolean", "null"]})
    if not isinstance(schema, Mapping):
        raise GrammarError(f"A JSON schema must be an object, not {type(schema).__name__}.", param="json_schema")
    plain = dict(schema)
    try:
        jsonschema.validators.validator_for(plain).check_schema(plain)
    except jsonschema.exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise GrammarError(f"Invalid JSON schema at {where}: {exc.message}.", param="json_schema") from exc
    _reject_unsupported(plain, "#")
    return _convert(plain)


def _convert(schema: dict[str, Any]) -> str:
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    try:
        resolved = converter.resolve_refs(schema, "input")
        converter.visit(resolved, "")
        return str(converter.format_grammar())
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
        detail = str(exc).strip() or type(exc).__name__
        raise GrammarError(f"Cannot turn this JSON schema into a grammar: {detail}.", param="json_schema") from exc


def _reject_unsupported(node: Any, path: str) -> None:
    if isinstance(node, bool):
        # ``false`` means "nothing allowed here": fine for additionalProperties/items (the converter
        # understands it), meaningless as a property or alternative.
        if node is False and not path.endswith(("/additionalProperties", "/additionalItems", "/items")):
            raise GrammarError(
                f"The schema 'false' at {path} matches nothing; it is not supported.", param="json_schema"
            )
        return
    if not isinstance(node, Mapping):
        return
    for key in node:
        if key in UNSUPPORTED_KEYWORDS:
            raise GrammarError(
                f"JSON schema keyword '{key}' at {path} is not supported for constrained output.",
                param="json_schema",
            )
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#"):
        raise GrammarError(
            f"Only local '$ref's (starting with '#') are supported, got {ref!r} at {path}.", param="json_schema"
        )
    for key in _SUBSCHEMA:
        if key in node:
            _reject_unsupported(node[key], f"{path}/{key}")
    for key in _SUBSCHEMA_LISTS:
        for i, sub in enumerate(node.get(key) or ()):
            _reject_unsupported(sub, f"{path}/{key}/{i}")
    for key in _SUBSCHEMA_MAPS:
        for name, sub in (node.get(key) or {}).items():
            _reject_unsupported(sub, f"{path}/{key}/{json.dumps(name)}")
