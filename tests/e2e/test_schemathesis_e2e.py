"""Property-based fuzzing of every operation in ``/openapi.json`` against a real ``haven serve``.

schemathesis generates valid and invalid requests from the schema; every ``model`` field is pinned to the
loaded tiny model so requests reach tokenization, templates and generation rather than stopping at a 404.
The assertion: no response is a 500, and any 5xx is a clean JSON error (a 503 when no model can load, a
502 for a pull whose hub is unreachable). Bounded: a few examples per operation, short generations; the
run takes well under two minutes on two cores.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from tests.e2e.conftest import HavenServer, free_port, start_haven_server

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 30
# Operations that would change what the rest of the run talks to (deleting or replacing the pinned model).
EXCLUDED = {("DELETE", "/api/delete"), ("POST", "/api/create"), ("POST", "/api/copy"), ("POST", "/api/push")}


@pytest.fixture(scope="module")
def fuzz_server(
    make_test_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HavenServer]:
    home = tmp_path_factory.mktemp("fuzz")
    with start_haven_server(
        home,
        {"tiny": make_test_model()},
        default_model="tiny",
        parallel=2,
        context_length=512,
        max_tokens_limit=8,
        hf_endpoint=f"http://127.0.0.1:{free_port()}",  # nothing listens: pulls fail fast and offline
        rate_limit_requests_per_minute=0,
    ) as url:
        yield url


def _pin_model(body: Any) -> None:
    if isinstance(body, dict):
        for key in ("model", "name", "source"):
            if key in body and isinstance(body[key], str):
                body[key] = "tiny"


def test_no_request_is_a_server_error(fuzz_server: HavenServer) -> None:
    schema = schemathesis.openapi.from_url(fuzz_server + "/openapi.json")
    failures: list[str] = []
    calls = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15  # the OpenAI and Ollama surfaces, not an empty schema
    for operation in operations:
        if (operation.method.upper(), operation.path) in EXCLUDED:
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])  # fmt: skip
        def fuzz(case: Any) -> None:
            nonlocal calls
            _pin_model(case.body)
            response = case.call(base_url=fuzz_server, timeout=60)
            calls += 1
            clean = response.status_code < 500 or (
                response.status_code in (502, 503) and "error" in json.loads(response.text)
            )
            if not clean:
                failures.append(f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}")

        fuzz()
    print(f"schemathesis: {calls} requests over {len(operations)} operations, {len(failures)} server errors")
    assert not failures, "\n".join(failures[:20])
