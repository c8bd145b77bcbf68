"""The compatibility tier: the real clients people use, unchanged, against one real ``haven serve``.

One server for the whole tier (starting one costs seconds on 2 cores), on a free loopback port, with two
tiny random-weight models: ``tiny`` (qwen2, Qwen 2.5 template, tool-capable) and ``r1`` (DeepSeek-R1
template, which opens ``<think>`` by itself). Random weights write gibberish, so tests check shapes, and
force exact output where they need it (a JSON schema, a forced tool choice). Every request keeps
``max_tokens`` small. What each client needs is written up in docs/compatibility.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import HavenServer, start_haven_server

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM must not fetch its price list


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/compat/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def compat_server(
    make_test_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HavenServer]:
    models = {"tiny": make_test_model(), "r1": make_test_model(template="deepseek-r1")}
    home = tmp_path_factory.mktemp("haven-compat")
    with start_haven_server(
        home, models, default_model="tiny", parallel=2, context_length=1024, max_loaded_models=2
    ) as url:
        yield url
