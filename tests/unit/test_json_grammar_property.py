"""Property tests: schemas from the supported subset × random seeds on the tiny random-weight model.

Every generation that ends with finish reason ``stop`` must parse with ``json.loads`` and validate
against its schema (formats checked). A random-weight model is the harshest client there is: it
picks tokens no real model would, so any hole in a grammar shows up as invalid output.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from haven.engine.engine import LlamaEngine
from haven.engine.grammar import json_schema_to_gbnf
from haven.engine.protocol import GenerationRequest, SamplingParams
from tests.support.engine_run import generate, tiny_engine
from tests.support.grammar_check import GrammarChecker, vocab_of

NAMES = st.sampled_from(["a", "b", "name", "x-y", "ünï", "with space", 'q"uote'])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=5))
PATTERNS = ["^[a-z]{1,4}$", "^\\d{3}-\\d{2}$", "^(yes|no)$", "ab", '^[^"\\\\]{0,3}$', "^.?$", "\\s"]


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    def lengths(d: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        return st.tuples(st.integers(0, 4), st.integers(0, 40)).map(
            lambda t: {**d, "minLength": t[0], "maxLength": t[0] + t[1]}
        )

    def bounds(kind: str) -> st.SearchStrategy[dict[str, Any]]:
        return st.tuples(st.integers(-50, 50), st.integers(0, 200), st.booleans()).map(
            lambda t: {"type": kind, "minimum": t[0], ("maximum" if t[2] else "exclusiveMaximum"): t[0] + t[1] + 1}
        )

    return st.one_of(
        st.just({"type": "string"}),
        lengths({"type": "string"}),
        st.sampled_from(["date", "time", "date-time", "uuid", "email"]).map(lambda f: {"type": "string", "format": f}),
        st.sampled_from(PATTERNS).map(lambda p: {"type": "string", "pattern": p}),
        st.just({"type": "integer"}),
        st.just({"type": "number"}),
        bounds("integer"),
        bounds("number"),
        st.just({"type": "boolean"}),
        st.just({"type": "null"}),
        st.lists(SCALARS, min_size=1, max_size=4, unique_by=json.dumps).map(lambda v: {"enum": v}),
        SCALARS.map(lambda v: {"const": v}),
        st.just({}),
    )


def _extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    def obj(props: dict[str, Any], required: list[bool], extra: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "properties": props,
            "required": [n for n, r in zip(props, required, strict=False) if r],
        }
        if extra != "absent":
            out["additionalProperties"] = extra
        return out

    return st.one_of(
        st.builds(
            obj,
            st.dictionaries(NAMES, children, max_size=4),
            st.lists(st.booleans(), min_size=4, max_size=4),
            st.one_of(st.just("absent"), st.booleans(), children),
        ),
        st.tuples(children, st.integers(0, 3), st.integers(0, 3)).map(
            lambda t: {"type": "array", "items": t[0], "minItems": t[1], "maxItems": t[1] + t[2]}
        ),
        st.tuples(st.lists(children, min_size=1, max_size=3), st.integers(0, 3)).map(
            lambda t: {"type": "array", "prefixItems": t[0], "items": False, "minItems": min(t[1], len(t[0]))}
        ),
        st.lists(children, min_size=2, max_size=3).map(lambda b: {"anyOf": b}),
        children.map(lambda c: {"allOf": [c, {}]}),
    )


_TREES = st.recursive(_leaf(), _extend, max_leaves=6)
# "#/$defs/…" always means the document root's $defs, so $ref is generated at the root only.
SCHEMAS = st.one_of(_TREES, _TREES.map(lambda c: {"$defs": {"d": c}, "$ref": "#/$defs/d"}))
TREE = {
    "$defs": {
        "tree": {
            "type": "object",
            "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/tree"}}},
            "required": ["v"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/tree",
}


@pytest.fixture(scope="module")
def engine(make_test_model: Callable[..., Path]) -> Iterator[LlamaEngine]:
    eng = tiny_engine(make_test_model(), context_length=512)
    yield eng
    asyncio.run(eng.close())


def _valid(schema: dict[str, Any], text: str) -> None:
    value = json.loads(text)
    # the draft's own format checker (jsonschema.FormatChecker() would check "time" the draft-3 way)
    cls = jsonschema.validators.validator_for(schema)
    cls(schema, format_checker=cls.FORMAT_CHECKER).validate(value)


async def _outputs(engine: LlamaEngine, schema: dict[str, Any], seeds: range) -> list[tuple[str, str]]:
    prompt = engine.tokenize("JSON:", add_special=True, parse_special=False)
    out = []
    for seed in seeds:
        r = await generate(engine, prompt, json_schema=schema, seed=seed, temperature=1.5, top_k=0, max_tokens=40)
        out.append((r.finished.reason, r.text))
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=SCHEMAS, seed=st.integers(0, 2**31))
def test_every_stopped_generation_is_valid_json_matching_its_schema(
    engine: LlamaEngine, schema: dict[str, Any], seed: int
) -> None:
    for reason, text in asyncio.run(_outputs(engine, schema, range(seed, seed + 2))):
        assert reason in ("stop", "length")
        if reason == "stop":
            _valid(schema, text)


def test_many_seeds_on_the_issue_schema_and_a_recursive_one(engine: LlamaEngine) -> None:
    city = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    stopped = 0
    for schema in (city, TREE, {}):
        for reason, text in asyncio.run(_outputs(engine, schema, range(12))):
            if reason == "stop":
                stopped += 1
                _valid(schema, text)
    assert stopped >= 6  # the property is not vacuous: most runs finish


@pytest.fixture(scope="module")
def checker(make_test_model: Callable[..., Path]) -> Iterator[GrammarChecker]:
    with vocab_of(make_test_model()) as vocab:
        yield GrammarChecker(vocab)


TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


@settings(max_examples=80, deadline=None)
@given(text=TEXT, lo=st.integers(0, 8), span=st.integers(0, 8))
def test_any_json_encoded_string_is_accepted_exactly_when_its_length_fits(
    checker: GrammarChecker, text: str, lo: int, span: int
) -> None:
    gbnf = json_schema_to_gbnf({"type": "string", "minLength": lo, "maxLength": lo + span})
    encoded = json.dumps(text, ensure_ascii=False)
    assert checker.accepts(gbnf, encoded) == (lo <= len(text) <= lo + span)


@settings(max_examples=40, deadline=None)
@given(text=TEXT, at=st.integers(0, 12), ctrl=st.integers(0, 0x1F))
def test_a_raw_control_character_in_a_string_is_always_refused(
    checker: GrammarChecker, text: str, at: int, ctrl: int
) -> None:
    encoded = json.dumps(text, ensure_ascii=False)
    cut = min(1 + at, len(encoded) - 1)
    assert not checker.accepts(json_schema_to_gbnf({"type": "string"}), encoded[:cut] + chr(ctrl) + encoded[cut:])


def test_grammar_compilation_runs_off_the_event_loop(engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    original = engine.scheduler.submit

    def recording_submit(request: GenerationRequest, loop: asyncio.AbstractEventLoop) -> Any:
        threads.append(threading.current_thread())
        return original(request, loop)

    monkeypatch.setattr(engine.scheduler, "submit", recording_submit)

    async def run(sampling: SamplingParams) -> threading.Thread:
        handle = await engine.submit(GenerationRequest([1, 2, 3], sampling))
        async for _ in handle.events():
            pass
        return threading.current_thread()

    loop_thread = asyncio.run(run(SamplingParams(json_schema={"type": "string"}, max_tokens=4)))
    assert threads[-1] is not loop_thread
    loop_thread = asyncio.run(run(SamplingParams(max_tokens=2)))
    assert threads[-1] is loop_thread  # no grammar: no thread hop on the hot path


def test_a_caller_leaving_while_the_grammar_compiles_cancels_the_request(
    engine: LlamaEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    cancelled: list[str] = []
    original_submit, original_cancel = engine.scheduler.submit, engine.scheduler.cancel

    def slow_submit(request: GenerationRequest, loop: asyncio.AbstractEventLoop) -> Any:
        release.wait(10)
        return original_submit(request, loop)

    def recording_cancel(request_id: str) -> None:
        cancelled.append(request_id)
        original_cancel(request_id)

    monkeypatch.setattr(engine.scheduler, "submit", slow_submit)
    monkeypatch.setattr(engine.scheduler, "cancel", recording_cancel)

    async def leave_early() -> None:
        request = GenerationRequest([1, 2, 3], SamplingParams(json_schema={}, max_tokens=64), request_id="gone")
        task = asyncio.ensure_future(engine.submit(request))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        for _ in range(200):  # the executor finishes the submit, then the callback cancels it
            if cancelled:
                return
            await asyncio.sleep(0.01)

    asyncio.run(leave_early())
    assert cancelled == ["gone"]
