"""simonw's ``llm`` (CLI and Python library) against Haven, configured the way its docs say for any
OpenAI-compatible server: an ``extra-openai-models.yaml`` in ``LLM_USER_PATH`` naming Haven's ``/v1``.

Covers a streamed prompt (the CLI's default), ``--no-stream``, options, a multi-turn conversation (llm sends
Haven's own earlier replies back), ``--schema`` (JSON that must parse: the schema grammar makes it so even with
random weights), the Python API, and llm's own log of the exchange (``llm logs``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import llm
import pytest

from tests.e2e.conftest import HavenServer

LLM_CLI = [sys.executable, "-m", "llm"]


@pytest.fixture(scope="module")
def llm_home(compat_server: HavenServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("llm-home")
    (home / "extra-openai-models.yaml").write_text(
        f"- model_id: haven-tiny\n  model_name: tiny\n  api_base: {compat_server}/v1\n  supports_schema: true\n",
        encoding="utf-8",
    )
    previous = os.environ.get("LLM_USER_PATH")
    os.environ["LLM_USER_PATH"] = str(home)  # the Python API reads it on every call
    try:
        yield home
    finally:
        if previous is None:
            os.environ.pop("LLM_USER_PATH", None)
        else:
            os.environ["LLM_USER_PATH"] = previous


def _llm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLM_USER_PATH": str(home), "OPENAI_API_KEY": "unused"}
    # stdin closed: llm appends whatever a non-terminal stdin holds to the prompt, and would wait for it.
    return subprocess.run(
        [*LLM_CLI, *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )


def test_cli_prompt_streamed_and_not(llm_home: Path) -> None:
    for extra in ([], ["--no-stream"]):
        done = _llm(llm_home, "-m", "haven-tiny", "Hi", "-o", "max_tokens", "6", "-o", "seed", "1", *extra)
        assert done.returncode == 0, done.stderr
        assert "Error" not in done.stderr


def test_cli_conversation_sends_haven_replies_back(llm_home: Path) -> None:
    first = _llm(llm_home, "-m", "haven-tiny", "Hi", "-o", "max_tokens", "6")
    assert first.returncode == 0, first.stderr
    again = _llm(llm_home, "-c", "And again?", "-o", "max_tokens", "6")  # -c: continue the last conversation
    assert again.returncode == 0, again.stderr
    logged = _llm(llm_home, "logs", "--json", "-n", "2")  # llm's own log of the exchange, oldest first
    assert logged.returncode == 0, logged.stderr
    first, second = json.loads(logged.stdout)
    assert (first["prompt"], second["prompt"]) == ("Hi", "And again?")
    assert first["conversation_id"] == second["conversation_id"] and second["model"] == "haven-tiny"
    # The second request carried the first turn and Haven's reply: its prompt is longer by at least both.
    assert second["input_tokens"] > first["input_tokens"] + first["output_tokens"]


DOG_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},  # bounded: random weights never end a string by themselves
        "age": {"type": "integer", "minimum": 0, "maximum": 30},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_cli_schema_gives_json_that_parses(llm_home: Path) -> None:
    schema = json.dumps(DOG_SCHEMA)
    done = _llm(llm_home, "-m", "haven-tiny", "--schema", schema, "invent a dog", "-o", "max_tokens", "80")
    assert done.returncode == 0, done.stderr
    obj = json.loads(done.stdout)
    assert set(obj) == {"name", "age"} and len(obj["name"]) <= 12 and 0 <= obj["age"] <= 30


def test_python_api(llm_home: Path) -> None:
    model = llm.get_model("haven-tiny")
    response = model.prompt("Hi", max_tokens=6, key="unused")
    assert isinstance(response.text(), str)
    usage = response.usage()
    assert usage.output is not None and 0 < usage.output <= 6
    conversation = model.conversation()
    for turn in ("Hi", "Go on"):
        assert isinstance(conversation.prompt(turn, max_tokens=4, key="unused").text(), str)
    assert len(conversation.responses) == 2
