"""A generated corpus of hostile grammars: deep, wide and huge JSON schemas and GBNF texts.

Each must be refused with a GrammarError (HTTP 400) or compile to a grammar llama.cpp parses;
none may crash, stall or exhaust the server (tests/unit/test_json_grammar.py checks the engine,
tests/e2e/test_grammar_e2e.py sends them to a real ``haven serve``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def nested_schema(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def fuzz_schemas() -> Iterator[Any]:
    for depth in (10, 40, 60, 99, 150, 1000):
        yield nested_schema(depth)
        items: Any = {"type": "integer"}
        for _ in range(depth):
            items = {"type": "array", "items": items, "maxItems": 3}
        yield items
        any_of: Any = {"type": "null"}
        for _ in range(depth):
            any_of = {"anyOf": [any_of, {"type": "boolean"}]}
        yield any_of
    for width in (10, 300, 1500, 5000):
        yield {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(width)}}
        yield {"enum": [f"v{i}" for i in range(width)]}
        yield {"type": "array", "prefixItems": [{"type": "integer"}] * width}
        yield {"allOf": [{"anyOf": [{"const": i}, {"const": -i}]} for i in range(min(width, 40))]}
    for size in (1999, 2000, 20000, 99999, 100_001, 10**9, 10**18):
        yield {"type": "string", "maxLength": size}
        yield {"type": "string", "minLength": size}
        yield {"type": "array", "minItems": size}
        yield {"type": "string", "pattern": f"^a{{{size}}}$"}
    yield {"type": "string", "pattern": "(" * 5000 + ")" * 5000}
    yield {"type": "string", "pattern": "a" * 5000}
    yield {"type": "integer", "minimum": -(10**300)}
    yield {"type": "number", "maximum": 1e308}
    yield {"properties": {"k" * 100_000: {}}, "required": ["k" * 100_000]}


def fuzz_grammars() -> Iterator[str]:
    for depth in (10, 64, 65, 1000, 20000):
        yield "root ::= " + "(" * depth + '"a"' + ")" * depth
    for count in (10, 1999, 2000, 2001, 20000, 10**9):
        yield f"root ::= [a-z]{{0,{count}}}"
        yield f'root ::= "ab"{{{count}}}'
    for n in (100, 4000, 20000):
        yield "root ::= r0\n" + "".join(f"r{i} ::= r{i + 1}\n" for i in range(n)) + f'r{n} ::= "a"'
        yield "root ::= " + " | ".join(f'"{i}"' for i in range(n))
    yield "root ::= " + "[" * 1000
    yield 'root ::= "' + "\\" * 10001 + '"'
