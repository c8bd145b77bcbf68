"""`haven run` / `ps` / `stop` as subprocesses against a real `haven serve`, and auto-starting one."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import HAVEN, HavenServer, free_port, server_env

pytestmark = pytest.mark.e2e

OPTIONS = ["-o", "temperature=0.8", "-o", "seed=1", "-o", "num_predict=12"]


def cli_env(server: HavenServer) -> dict[str, str]:
    return server_env(server.home, {"port": server.rsplit(":", 1)[1]})


def haven(server: HavenServer, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HAVEN, *args], env=cli_env(server), input=stdin, capture_output=True, text=True, timeout=120
    )


def api_answer(server: HavenServer, model: str, prompt: str) -> dict[str, str]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": False,
        "options": {"temperature": 0.8, "seed": 1, "num_predict": 12},
    }
    message: dict[str, str] = httpx.post(server + "/api/chat", json=body, timeout=120).json()["message"]
    return message


def test_one_shot_prints_the_same_answer_as_the_api(haven_server: HavenServer) -> None:
    expected = api_answer(haven_server, "tiny", "Why is the sky blue?")["content"]
    result = haven(haven_server, "run", "tiny", "Why", "is", "the", "sky", "blue?", *OPTIONS)
    assert result.returncode == 0, result.stderr
    assert expected and result.stdout == expected + ("" if expected.endswith("\n") else "\n")


def test_piped_stdin_is_the_prompt(haven_server: HavenServer) -> None:
    expected = api_answer(haven_server, "tiny", "hello from a pipe")["content"]
    result = haven(haven_server, "run", "tiny", *OPTIONS, stdin="hello from a pipe\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") == expected.rstrip("\n")


def test_thinking_goes_to_stderr_and_can_be_hidden(haven_server: HavenServer) -> None:
    expected = api_answer(haven_server, "r1", "think about it")
    assert expected.get("thinking")
    result = haven(haven_server, "run", "r1", "think about it", *OPTIONS)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("Thinking...\n") and expected["thinking"] in result.stderr
    assert expected["thinking"] not in result.stdout
    hidden = haven(haven_server, "run", "r1", "think about it", "--hide-thinking", *OPTIONS)
    assert hidden.returncode == 0 and hidden.stderr == "" and hidden.stdout == result.stdout


def test_unknown_model_is_one_line(haven_server: HavenServer) -> None:
    result = haven(haven_server, "run", "no-such-model", "hi")
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no-such-model" in lines[0]


def test_ps_and_stop(haven_server: HavenServer) -> None:
    assert haven(haven_server, "run", "llama", "hi", "-o", "num_predict=2").returncode == 0
    listed = haven(haven_server, "ps")
    assert listed.returncode == 0 and listed.stdout.splitlines()[0].split() == [
        "NAME",
        "ID",
        "SIZE",
        "CONTEXT",
        "SLOTS",
        "KV/SLOT",
        "UNTIL",
    ]
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    # Cells split on spaces: name, id, size (number, unit), context, slots, KV per slot (number, unit, type), …
    assert "llama:latest" in rows and rows["llama:latest"][4] == "2048"
    assert rows["llama:latest"][7] in ("KB", "MB", "GB") and rows["llama:latest"][8] == "f16"
    stopped = haven(haven_server, "stop", "llama")
    assert stopped.returncode == 0 and stopped.stdout == "Stopped llama:latest.\n"
    assert "llama:latest" not in haven(haven_server, "ps").stdout
    again = haven(haven_server, "stop", "llama")
    assert again.returncode == 1 and "is not loaded" in again.stderr


def test_run_starts_a_server_when_none_answers(tmp_path: Path, make_test_model: Callable[..., Path]) -> None:
    home = tmp_path / "home"
    port = free_port()
    env = server_env(home, {"port": port})
    subprocess.run([*HAVEN, "models", "import", str(make_test_model()), "--name", "tiny"], env=env, check=True)
    result = subprocess.run(
        [*HAVEN, "run", "tiny", "hi", "-o", "num_predict=4"], env=env, capture_output=True, text=True, timeout=150
    )
    pid = int((home / "serve.pid").read_text())
    try:
        assert result.returncode == 0, result.stderr
        # The server outlives the command and keeps serving.
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        assert "Application startup complete" in (home / "logs" / "serve.log").read_text()
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
