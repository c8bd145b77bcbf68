"""Haven's JSON schema → GBNF compiler and the grammar bounds, checked with llama.cpp's own grammar.

Each feature: documents the schema allows are accepted token by token, documents it forbids are
not. The limits: the payloads that crashed or exhausted the server, and a generated corpus of deep,
wide and huge schemas and GBNF texts, each a GrammarError (400) or a grammar llama.cpp parses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from haven.engine.grammar import bounded_gbnf, check_json_schema, json_schema_to_gbnf
from haven.engine.json_grammar.gbnf import RuleSet
from haven.engine.json_grammar.limits import DEFAULT_LIMITS
from haven.engine.json_grammar.numbers import integer_range
from haven.errors import GrammarError
from tests.support.grammar_check import GrammarChecker, vocab_of
from tests.support.grammar_corpus import fuzz_grammars, fuzz_schemas, nested_schema

CTRL = "\x07"

# (schema, accepted documents, refused documents)
CASES: list[tuple[dict[str, Any], list[str], list[str]]] = [
    (
        {
            "type": "object",
            "properties": {
                "a": {"type": "string", "maxLength": 5},
                "b": {"type": "integer", "minimum": 3, "maximum": 120},
            },
            "required": ["a"],
        },
        ['{"a": "xy"}', '{"a":"","b":3}', '{"a": "abcde", "b": 120}'],
        ['{"b":3}', '{"a":"abcdef"}', '{"a":"x","b":2}', '{"a":"x","b":121}', f'{{"a":"{CTRL}"}}'],
    ),
    (
        {"type": "string"},
        ['"a\\n\\u00e9\\"\\\\\\/"', '""', '"é€😀"'],
        [f'"{CTRL}"', '"\\x"', '"\\ud800"', '"a', '"\n"'],
    ),
    (
        {"type": "string", "format": "date"},
        ['"2024-02-29"', '"2023-12-31"', '"2000-02-29"'],
        ['"2023-02-29"', '"1900-02-29"', '"2023-13-01"', '"0000-01-01"', '"2023-04-31"'],
    ),
    ({"type": "string", "format": "time"}, ['"10:00:00Z"', '"23:59:59.123+05:30"'], ['"24:00:00Z"', '"10:00:00"']),
    (
        {"type": "string", "format": "uuid"},
        ['"123e4567-e89b-12d3-a456-426614174000"'],
        ['"123e4567e89b12d3a456426614174000"'],
    ),
    (
        {"type": "string", "format": "date-time"},
        ['"2024-01-01T10:00:00Z"', '"2024-01-01T10:00:00.5+02:00"'],
        ['"2024-01-01 10:00:00Z"'],
    ),
    ({"type": "string", "format": "email"}, ['"a.b@example.com"'], ['"ab"', '"a@b"']),
    ({"type": "string", "pattern": "^[a-c]+-\\d{2}$"}, ['"ab-12"'], ['"ad-12"', '"ab-1"', '"ab-123"']),
    ({"type": "string", "pattern": 'x"'}, ['"ax\\"b"', '"x\\""'], ['"ab"']),
    (
        {"type": "string", "pattern": "^(ab|cd){2,3}[^a-z]?$"},
        ['"abcd"', '"cdcdab1"'],
        ['"ab"', '"abcdabcd"', '"abcdz"'],
    ),
    (
        {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3},
        ["[1, 2]", "[1,2,3]"],
        ["[1]", "[1,2,3,4]", "[]"],
    ),
    (
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False, "minItems": 1},
        ['["a"]', '["a", 1]'],
        ["[]", "[1]", '["a",1,2]'],
    ),
    ({"enum": ["cat", "dog", 1, None]}, ['"cat"', "1", "null"], ['"cow"', "2"]),
    ({"type": "string", "enum": ["cat", 1]}, ['"cat"'], ["1"]),
    ({"const": {"a": [1, 2]}}, ['{"a": [1, 2]}'], ['{"a":[1]}']),
    ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, ['"x"', "5"], ["5.5", "null"]),
    ({"oneOf": [{"type": "boolean"}, {"type": "null"}]}, ["true", "null"], ['"x"']),
    ({"type": ["string", "null"]}, ['"x"', "null"], ["1"]),
    ({"type": "integer", "nullable": True}, ["1", "null"], ['"1"']),
    (
        {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"properties": {"b": {"type": "string"}}},
            ]
        },
        ['{"a":1}', '{"a":1,"b":"x"}'],
        ['{"b":"x"}', '{"a":"1"}'],
    ),
    (
        {
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {
                        "v": {"type": "integer"},
                        "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]},
                    },
                    "required": ["v", "next"],
                }
            },
            "$ref": "#/$defs/node",
        },
        ['{"v":1,"next":{"v":2,"next":null}}'],
        ['{"v":1}', '{"v":1,"next":{"v":2}}'],
    ),
    (
        {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
        ['{"a":1,"b":"x"}', '{"ab":"y"}', '{"zz": "q"}'],
        ['{"b":1}', '{"a":1,"a":"x"}'],
    ),
    ({"type": "object", "additionalProperties": False}, ["{}"], ['{"a":1}']),
    (
        {"type": "object"},
        ['{"a": [1, {"b": null}]}', "{}"],
        ["[]", '{"a":1'],
    ),
    ({"type": "object", "properties": {"a": {"type": "integer"}}}, ['{"a": 1}', "{}"], ['{"b": 1}']),
    ({"type": "number", "minimum": 0, "maximum": 1}, ["0", "0.5", "1", "0.999"], ["1.5", "-0.1", "2", "1e0"]),
    ({"type": "number", "minimum": -2, "maximum": -1}, ["-1", "-1.5", "-2"], ["-2.5", "0", "-0.5"]),
    ({"type": "number"}, ["-0.5e10", "3", "1.25E-2"], ["01", ".5", "1.", "+1", "NaN"]),
    ({"type": "integer", "exclusiveMinimum": -5, "maximum": 5}, ["-4", "0", "5"], ["-5", "6", "-0", "1.0"]),
    (
        {"type": "string", "minLength": 3, "maxLength": 40},
        ['"abc"', '"' + "x" * 40 + '"'],
        ['"ab"', '"' + "x" * 41 + '"'],
    ),
    ({"type": "string", "minLength": 100}, ['"' + "ab" * 50 + '"'], ['"' + "a" * 99 + '"']),
    ({"type": "string", "maxLength": 20000}, ['"' + "hello " * 500 + '"'], ["1"]),
    (
        {"type": "array", "items": {"type": "boolean"}, "maxItems": 100},
        ["[" + ",".join(["true"] * 100) + "]"],
        ["[" + ",".join(["true"] * 101) + "]"],
    ),
    ({}, ['{"a": [1, {"b": null}]}', "{}"], ["[1]", '"x"', "nul", f'{{"a": "{CTRL}"}}']),  # {}: any object
]


@pytest.fixture(scope="module")
def checker(make_test_model: Callable[..., Path]) -> Iterator[GrammarChecker]:
    with vocab_of(make_test_model()) as vocab:
        yield GrammarChecker(vocab)


@pytest.mark.parametrize(("schema", "good", "bad"), CASES, ids=[json.dumps(c[0])[:60] for c in CASES])
def test_grammar_accepts_valid_documents_and_refuses_the_rest(
    checker: GrammarChecker, schema: dict[str, Any], good: list[str], bad: list[str]
) -> None:
    gbnf = json_schema_to_gbnf(schema)
    assert checker.parses(gbnf), gbnf
    for text in good:
        assert checker.accepts(gbnf, text), (text, gbnf)
    for text in bad:
        assert not checker.accepts(gbnf, text), (text, gbnf)


def test_true_is_any_json_value(checker: GrammarChecker) -> None:
    gbnf = json_schema_to_gbnf(True)
    for text in ('{"a": [1]}', "[1, 2]", '"x"', "-1.5e3", "true", "null"):
        assert checker.accepts(gbnf, text)
    assert not checker.accepts(gbnf, "nul")


def test_the_checker_itself_can_refuse(checker: GrammarChecker) -> None:
    assert not checker.parses("root ::= ( oops")
    assert not checker.accepts('root ::= "a"', "b")


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"$ref": "#"}, "left recursion"),
        ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "left recursion"),
        ({"$ref": "#/$defs/x"}, "points to nothing"),
        ({"$ref": "#anchor"}, "not anchors"),
        ({"type": "string", "minLength": 3, "pattern": "^a+$"}, "cannot be combined"),
        ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "nothing in common"),
        ({"allOf": [{"pattern": "a"}, {"pattern": "b"}]}, "cannot merge two different values of 'pattern'"),
        ({"type": "string", "pattern": "(a)\\1"}, "escape \\\\1"),
        ({"type": "string", "pattern": "a\\b"}, "escape \\\\b"),
        ({"type": "string", "pattern": "a^b"}, "anchor"),
        ({"type": "integer", "minimum": 5, "maximum": 4}, "satisfies its bounds"),
        ({"type": "string", "enum": [1, 2]}, "no value"),
        ({"type": "array", "uniqueItems": True}, "keyword 'uniqueItems'"),
        ({"type": "object", "minProperties": 2}, "keyword 'minProperties'"),
        ({"type": "object", "properties": {"a": {"strict": True}}}, "keyword 'strict' at #/properties/\"a\""),
    ],
)
def test_what_cannot_be_enforced_is_an_error_naming_it(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(GrammarError, match=message) as info:
        json_schema_to_gbnf(schema)
    assert info.value.status_code == 400


def test_no_op_values_and_annotations_are_accepted() -> None:
    json_schema_to_gbnf(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "T",
            "description": "d",
            "type": "array",
            "uniqueItems": False,
            "examples": [[]],
            "x-extension": 1,
        }
    )


# --- the payloads of the issue and the limits ----------------------------------------------------


def test_twenty_thousand_nested_parentheses_are_refused_before_llama_cpp() -> None:
    grammar = "root ::= " + "(" * 20000 + '"a"' + ")" * 20000
    with pytest.raises(GrammarError, match="max_gbnf_depth"):
        bounded_gbnf(grammar)


def test_max_length_twenty_thousand_compiles_to_a_shallow_grammar(checker: GrammarChecker) -> None:
    gbnf = json_schema_to_gbnf({"type": "string", "maxLength": 20000})
    assert len(gbnf) < 4000
    assert checker.parses(gbnf)
    assert checker.accepts(gbnf, '"' + "y" * 3000 + '"')


def test_min_length_a_billion_is_a_limit_error_naming_the_limit() -> None:
    with pytest.raises(GrammarError, match="max_length") as info:
        json_schema_to_gbnf({"type": "string", "minLength": 1_000_000_000})
    assert "1000000000" in info.value.message


def test_schema_nested_150_deep_is_refused_without_recursion_error() -> None:
    for check in (json_schema_to_gbnf, check_json_schema):
        with pytest.raises(GrammarError, match="max_schema_depth"):
            check(nested_schema(150))
    json_schema_to_gbnf(nested_schema(30))


@pytest.mark.parametrize("k", [33, 100, 999, 20000, 99999, 100000])
def test_optional_repetition_depth_grows_like_the_square_root(k: int) -> None:
    rules = RuleSet(DEFAULT_LIMITS, param="t")
    expr = rules.repeat("x", 0, k)
    text = rules.text(expr)
    spans = [int(m.group(1)) for m in re.finditer(r"\{0,(\d+)\}", text)]
    # nested optional depth along one branch: at most two spans of about sqrt(k)
    assert max(spans) <= int(k**0.5) + 2
    assert len(text) < 2000


@pytest.mark.parametrize(("lo", "hi"), [(0, 0), (5, 5), (0, 40), (33, 33), (1025, 1025), (3, 100), (64, 2000)])
def test_bounded_repetition_matches_exactly_the_counts(checker: GrammarChecker, lo: int, hi: int) -> None:
    rules = RuleSet(DEFAULT_LIMITS, param="t")
    gbnf = rules.text(rules.repeat('"a"', lo, hi) or '""')
    for n in {0, lo - 1, lo, (lo + hi) // 2, hi, hi + 1} - {-1}:
        assert checker.accepts(gbnf, "a" * n) == (lo <= n <= hi), n


@pytest.mark.parametrize(("lo", "hi"), [(0, 9), (3, 120), (-50, -3), (-7, 13), (99, 1001), (None, -10), (10, None)])
def test_integer_ranges_are_exact(checker: GrammarChecker, lo: int | None, hi: int | None) -> None:
    gbnf = "root ::= " + " | ".join(integer_range(lo, hi)) + "\n"
    a = lo if lo is not None else (hi or 0) - 300
    b = hi if hi is not None else (lo or 0) + 300
    for n in range(a - 12, b + 12):
        expected = (lo is None or n >= lo) and (hi is None or n <= hi)
        assert checker.accepts(gbnf, str(n)) == expected, n


@pytest.mark.parametrize(
    ("grammar", "limit"),
    [
        ("root ::= " + '"a"' * 10 + "{0,5000}", "max_repetition"),
        ("root ::= [a-z]{3000}", "max_repetition"),
        ("root ::= x\n" + "".join(f"x ::= y{i}\n" for i in range(5000)), "max_rules"),
        ('root ::= "' + "a" * 300_000 + '"', "max_gbnf_bytes"),
        ("root ::= " + " ".join(['"abcdefghij"{1000}'] * 30), "max_elements"),
    ],
)
def test_gbnf_over_a_limit_is_refused_naming_it(grammar: str, limit: str) -> None:
    with pytest.raises(GrammarError, match=limit):
        bounded_gbnf(grammar)


@pytest.mark.parametrize(
    "grammar",
    ['root ::= "a', "root ::= [a-", "root ::= (a", "root ::= a)", 'x ::= "a"', "root ::= a{,}", "root ::= \x00"],
)
def test_malformed_gbnf_is_refused_by_the_scanner(grammar: str) -> None:
    with pytest.raises(GrammarError):
        bounded_gbnf(grammar)


def test_ordinary_gbnf_passes_the_scanner_unchanged(checker: GrammarChecker) -> None:
    grammar = (
        'root ::= greeting ("," ws name)?  # a comment\ngreeting ::= "hi" | "hello"\n'
        "ws ::= [ \\t]{0,4}\nname ::= [a-z]+\n"
    )
    assert bounded_gbnf(grammar) == grammar
    assert checker.accepts(grammar, "hello, bob")


def test_fuzzed_deep_wide_and_huge_schemas_are_400s_or_grammars_llama_cpp_parses(checker: GrammarChecker) -> None:
    outcomes = {"error": 0, "ok": 0}
    for schema in fuzz_schemas():
        try:
            gbnf = json_schema_to_gbnf(schema)
        except GrammarError as exc:
            assert exc.status_code == 400 and exc.message
            outcomes["error"] += 1
            continue
        assert checker.parses(gbnf), json.dumps(schema)[:200]
        outcomes["ok"] += 1
    assert outcomes["error"] > 5 and outcomes["ok"] > 5, outcomes


def test_fuzzed_gbnf_texts_are_400s_or_grammars_llama_cpp_parses(checker: GrammarChecker) -> None:
    outcomes = {"error": 0, "ok": 0, "llama": 0}
    for grammar in fuzz_grammars():
        try:
            bounded_gbnf(grammar)
        except GrammarError:
            outcomes["error"] += 1
            continue
        outcomes["ok" if checker.parses(grammar) else "llama"] += 1
    assert outcomes["error"] > 5 and outcomes["ok"] > 5, outcomes


# --- the schemas real clients send ---------------------------------------------------------------


def test_a_pydantic_model_schema_compiles_and_accepts_its_own_dumps(checker: GrammarChecker) -> None:
    import datetime
    import enum
    import uuid

    from pydantic import BaseModel, Field

    class Color(enum.Enum):
        red = "red"
        green = "green"

    class Address(BaseModel):
        street: str = Field(min_length=1, max_length=30)
        zip: str | None = Field(default=None, pattern=r"^\d{5}$")

    class Person(BaseModel):
        name: str
        age: int = Field(ge=0, le=150)
        score: float = Field(ge=0, le=1)
        color: Color
        tags: list[str] = Field(default_factory=list, max_length=3)
        home: Address
        born: datetime.date
        id: uuid.UUID

    gbnf = json_schema_to_gbnf(Person.model_json_schema())
    person = Person(
        name='Ann "A" \\ B',
        age=150,
        score=0.25,
        color=Color.green,
        tags=["x", "é"],
        home=Address(street="Main 1", zip="12345"),
        born=datetime.date(2000, 2, 29),
        id=uuid.UUID(int=7),
    )
    assert checker.accepts(gbnf, person.model_dump_json())
    assert checker.accepts(gbnf, person.model_dump_json(indent=2))
    assert not checker.accepts(gbnf, person.model_dump_json().replace('"age":150', '"age":151'))


def test_forced_tool_call_schemas_compile(checker: GrammarChecker) -> None:
    weather = {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    }
    clock = {"name": "now", "parameters": {"type": "object", "properties": {}}}
    calls = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"name": {"const": t["name"]}, "arguments": t["parameters"]},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for t in (weather, clock)
        ]
    }
    gbnf = json_schema_to_gbnf(calls)
    assert checker.accepts(gbnf, '{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}')
    assert checker.accepts(gbnf, '{"name": "now", "arguments": {}}')
    assert not checker.accepts(gbnf, '{"name": "get_weather", "arguments": {}}')
    assert not checker.accepts(gbnf, '{"name": "other", "arguments": {}}')
