"""json_schema_to_gbnf / JSON_OBJECT_GBNF: schema validation, refusals, and real llama.cpp parsing."""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import pytest

from haven.engine.grammar import JSON_OBJECT_GBNF, json_schema_to_gbnf
from haven.errors import GrammarError

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "kind": {"enum": ["cat", "dog"]},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_object_schema_lists_its_properties_in_the_grammar() -> None:
    gbnf = json_schema_to_gbnf(PERSON)
    assert gbnf.count("root ::=") == 1
    assert '"\\"name\\""' in gbnf and '"\\"age\\""' in gbnf
    assert '"\\"cat\\""' in gbnf


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "strng"}, "Invalid JSON schema at type"),
        ({"type": "object", "properties": {"a": {"type": 5}}}, "Invalid JSON schema at properties/a/type"),
        ({"type": "object", "required": "name"}, "Invalid JSON schema at required"),
        ({"not": {"type": "string"}}, "keyword 'not' at # is not supported"),
        ({"type": "object", "properties": {"x": {"if": {}, "then": {}}}}, "'if' at #/properties/\"x\""),
        ({"type": "object", "patternProperties": {"^a": {}}}, "'patternProperties'"),
        ({"$ref": "https://example.com/s.json"}, "Only local '\\$ref's"),
        ({"$ref": "#/$defs/missing"}, "points to nothing"),
        ({"type": "string", "pattern": "a(?=b)"}, "lookaround"),
        ({"type": "object", "properties": {"a": False}, "required": ["a"]}, "required but can never be valid"),
        ({"anyOf": [False]}, "matches nothing"),
        ({"type": "number", "multipleOf": 3}, "keyword 'multipleOf'"),
        ({"type": "string", "format": "hostname"}, "format 'hostname' at # is not supported"),
    ],
)
def test_bad_or_unsupported_schemas_raise_grammar_error(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(GrammarError, match=message) as info:
        json_schema_to_gbnf(schema)
    assert info.value.status_code == 400
    assert info.value.code == "invalid_grammar"


def test_non_mapping_schema_is_refused() -> None:
    with pytest.raises(GrammarError, match="must be an object, not list"):
        json_schema_to_gbnf([])  # type: ignore[arg-type]


# --- real llama.cpp: the grammar parses and accepts/rejects token sequences -------------------


@pytest.fixture(scope="module")
def vocab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from haven.models.factory import make_model

    path = make_model(
        tmp_path_factory.mktemp("gm") / "m.gguf", arch="qwen2", size="tiny", quant="f32", template="qwen2.5", seed=0
    )
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(Path(path)).encode(), params)
    assert model
    yield llama_cpp.llama_model_get_vocab(model)
    llama_cpp.llama_model_free(model)


def _accepts(vocab: Any) -> Callable[[str, str], bool]:
    def check(gbnf: str, text: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        assert sampler, "llama.cpp failed to parse the grammar"
        try:
            raw = text.encode()
            buf = (llama_cpp.llama_token * (len(raw) + 8))()
            n = llama_cpp.llama_tokenize(vocab, raw, len(raw), buf, len(buf), False, False)
            assert n > 0
            for tok in buf[:n]:
                cand = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(tok, 0.0, 0.0))
                arr = llama_cpp.llama_token_data_array(cand, 1, -1, False)
                llama_cpp.llama_sampler_apply(sampler, ctypes.byref(arr))
                if math.isinf(cand[0].logit):
                    return False
                llama_cpp.llama_sampler_accept(sampler, tok)
            # end of generation must be allowed too
            eos = llama_cpp.llama_vocab_eos(vocab)
            cand = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(eos, 0.0, 0.0))
            arr = llama_cpp.llama_token_data_array(cand, 1, -1, False)
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(arr))
            return not math.isinf(cand[0].logit)
        finally:
            llama_cpp.llama_sampler_free(sampler)

    return check


def test_schema_grammar_accepts_matching_json_and_rejects_the_rest(vocab: Any) -> None:
    accepts = _accepts(vocab)
    gbnf = json_schema_to_gbnf(PERSON)
    assert accepts(gbnf, json.dumps({"name": "Ann", "age": 3}))
    assert accepts(gbnf, json.dumps({"name": "Bo", "age": 30, "tags": ["a"], "kind": "dog"}))
    assert not accepts(gbnf, json.dumps({"age": 3}))  # missing required name
    assert not accepts(gbnf, json.dumps({"name": "Ann", "age": "3"}))  # wrong type
    assert not accepts(gbnf, json.dumps({"name": "Ann", "age": 3, "kind": "cow"}))  # not in enum


def test_json_object_grammar_accepts_objects_only(vocab: Any) -> None:
    accepts = _accepts(vocab)
    assert accepts(JSON_OBJECT_GBNF, '{"a": [1, 2.5, -3e4], "b": {"c": null, "d": "x\\u00e9"}}')
    assert accepts(JSON_OBJECT_GBNF, "{}")
    assert not accepts(JSON_OBJECT_GBNF, "[1, 2]")
    assert not accepts(JSON_OBJECT_GBNF, '"text"')
    assert not accepts(JSON_OBJECT_GBNF, '{"a": 1')  # unfinished


def test_garbage_grammar_is_rejected_by_llama_cpp(vocab: Any) -> None:
    # proves the parse check above can fail
    assert not llama_cpp.llama_sampler_init_grammar(vocab, b"root ::= ( oops", b"root")
