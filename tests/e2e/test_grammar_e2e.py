"""Hostile grammars against a real ``haven serve``: every one is a 400 or valid output, and the server lives.

The three payloads that took the server down (20,000 nested parentheses of GBNF; a string schema
with ``maxLength`` 20,000; one with ``minLength`` 1,000,000,000), a schema nested 150 deep, and the
generated corpus of tests/support/grammar_corpus.py, sent through the OpenAI ``grammar`` extension
and ``response_format``, and through Ollama's ``format``. Afterwards the same process still answers
``/health`` and an ordinary chat.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tests.e2e.conftest import HavenServer, start_haven_server
from tests.support.grammar_corpus import fuzz_grammars, fuzz_schemas, nested_schema

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def server(make_test_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[HavenServer]:
    home = tmp_path_factory.mktemp("haven-grammar")
    with start_haven_server(home, {"tiny": make_test_model()}, default_model="tiny", parallel=2) as url:
        yield url


@pytest.fixture(scope="module")
def http(server: HavenServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as client:
        yield client


def _dumps(body: Any) -> str:
    """json.dumps with room for the corpus's 1,000-deep schemas (the stdlib encoder recurses)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        return json.dumps(body)
    finally:
        sys.setrecursionlimit(limit)


def _openai_schema(http: httpx.Client, schema: Any) -> httpx.Response:
    body = {
        "model": "tiny",
        "messages": HELLO,
        "max_tokens": 6,
        "seed": 1,
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}},
    }
    return http.post("/v1/chat/completions", content=_dumps(body), headers={"content-type": "application/json"})


def _check_openai(response: httpx.Response, schema: Any) -> None:
    assert response.status_code in (200, 400), response.text[:300]
    if response.status_code == 400:
        error = response.json()["error"]
        assert error["message"] and error["type"] == "invalid_request_error"
        return
    choice = response.json()["choices"][0]
    if choice["finish_reason"] == "stop":
        jsonschema.validate(json.loads(choice["message"]["content"]), schema)


def test_the_three_crashing_payloads_are_refused_or_served(server: HavenServer, http: httpx.Client) -> None:
    parens = "root ::= " + "(" * 20000 + '"a"' + ")" * 20000
    r = http.post("/v1/chat/completions", json={"model": "tiny", "messages": HELLO, "max_tokens": 4, "grammar": parens})
    assert r.status_code == 400 and "max_gbnf_depth" in r.json()["error"]["message"]

    long = {"type": "string", "maxLength": 20000}
    r = http.post(
        "/api/chat",
        json={"model": "tiny", "messages": HELLO, "format": long, "stream": False, "options": {"num_predict": 8}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["message"]["content"].startswith('"')

    huge = {"type": "string", "minLength": 1_000_000_000}
    r = http.post("/api/chat", json={"model": "tiny", "messages": HELLO, "format": huge, "stream": False})
    assert r.status_code == 400 and "max_length" in r.json()["error"]
    r = _openai_schema(http, huge)
    assert r.status_code == 400 and "max_length" in r.json()["error"]["message"]

    deep = nested_schema(150)
    assert _openai_schema(http, deep).status_code == 400
    r = http.post("/api/chat", json={"model": "tiny", "messages": HELLO, "format": deep, "stream": False})
    assert r.status_code == 400
    assert server.process.poll() is None


def test_the_fuzzed_corpus_gives_400s_or_valid_output_and_the_server_survives(
    server: HavenServer, http: httpx.Client
) -> None:
    statuses: dict[int, int] = {}
    for schema in fuzz_schemas():
        r = _openai_schema(http, schema)
        assert r.status_code != 500, (_dumps(schema)[:200], server.log()[-3000:])
        _check_openai(r, schema)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    for grammar in fuzz_grammars():
        body = {"model": "tiny", "messages": HELLO, "max_tokens": 4, "grammar": grammar}
        r = http.post("/v1/chat/completions", json=body)
        assert r.status_code in (200, 400), r.text[:300]
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
    assert statuses.get(200, 0) > 5 and statuses.get(400, 0) > 5, statuses
    assert server.process.poll() is None, server.log()[-2000:]
    assert http.get("/health").status_code == 200
    reply = http.post("/v1/chat/completions", json={"model": "tiny", "messages": HELLO, "max_tokens": 4})
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["role"] == "assistant"
