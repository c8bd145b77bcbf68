"""`haven run` / `ps` / `stop` against the Ollama routes served by uvicorn on loopback over a fake engine."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi import FastAPI

from haven.cli import client as cli_client
from haven.cli.main import build_cli
from haven.engine.protocol import EngineStats
from haven.server.app import create_app
from haven.settings import Settings, get_settings
from tests.asgi.ollama_fakes import MANIFEST, FakeEngine
from tests.support.fake_engine import FakeLoader, FakeStore
from tests.support.loopback import serve_on_loopback


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class FakeServer:
    app: FastAPI
    engine: FakeEngine


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeServer]:
    engine = FakeEngine()
    store = FakeStore(tmp_path / "store", names=())
    store.add("tiny:latest", **MANIFEST)
    app = create_app(Settings(home=tmp_path / "home"), engine_loader=FakeLoader(make=lambda name: engine), store=store)
    with serve_on_loopback(app) as url:
        monkeypatch.setenv("HAVEN_PORT", url.rsplit(":", 1)[1])
        get_settings.cache_clear()
        # A test must never spawn a real server: fail loudly if the client tries.
        monkeypatch.setattr(cli_client, "start_server", lambda *a: pytest.fail("tried to start a server"))
        yield FakeServer(app, engine)


def haven(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(build_cli(), list(args), input=input, catch_exceptions=False)


def test_run_one_shot_prints_answer_on_stdout_and_thinking_on_stderr(fake_server: FakeServer) -> None:
    result = haven("run", "tiny:latest", "Why", "is", "the", "sky", "blue?", input="")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Hello world\n"
    assert "Thinking...\nLet me think." in result.stderr
    sent = fake_server.engine.rendered[-1]["messages"]
    assert sent == [{"role": "user", "content": "Why is the sky blue?"}]


def test_run_hide_thinking_and_system(fake_server: FakeServer) -> None:
    result = haven("run", "tiny:latest", "hi", "--hide-thinking", "--system", "Be brief.", "--no-think", input="")
    assert result.exit_code == 0
    assert result.stdout == "Hello world\n" and result.stderr == ""
    rendered = fake_server.engine.rendered[-1]
    assert rendered["messages"][0] == {"role": "system", "content": "Be brief."}
    assert rendered["enable_thinking"] is False


def test_run_options_reach_the_sampler(fake_server: FakeServer) -> None:
    result = haven("run", "tiny:latest", "hi", "-o", "temperature=0", "-o", "num_predict=8", "-o", "stop=END", input="")
    assert result.exit_code == 0, result.stderr
    sampling = fake_server.engine.submitted[-1].sampling
    assert (sampling.temperature, sampling.max_tokens, sampling.stop) == (0, 8, ("END",))
    result = haven("run", "tiny:latest", "hi", "-o", "temperature", input="")
    assert result.exit_code == 1 and "is not KEY=VALUE" in result.stderr
    result = haven("run", "tiny:latest", "hi", "-o", "top_p=7", input="")
    assert result.exit_code == 1 and "options.top_p" in result.stderr
    assert len(fake_server.engine.submitted) == 1  # the bad requests never reached the engine


def test_run_reads_piped_stdin(fake_server: FakeServer) -> None:
    result = haven("run", "tiny:latest", input="what is 2+2?\n")
    assert result.exit_code == 0 and result.stdout == "Hello world\n"
    assert fake_server.engine.rendered[-1]["messages"][-1]["content"] == "what is 2+2?"
    result = haven("run", "tiny:latest", "Summarize:", input="a long text\n")
    assert fake_server.engine.rendered[-1]["messages"][-1]["content"] == "Summarize:\n\na long text"


def test_run_unknown_model_is_one_clear_line(fake_server: FakeServer) -> None:
    result = haven("run", "nope", "hi", input="")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: model nope:latest is not in the store (see `haven models list`; add it with "
        "`haven models import PATH --name nope:latest` or `haven models pull`)"
    ]


def test_run_empty_stdin_is_an_error(fake_server: FakeServer) -> None:
    result = haven("run", "tiny:latest", input="   \n")
    assert result.exit_code == 1 and "prompt is empty" in result.stderr


def test_ps_and_stop(fake_server: FakeServer) -> None:
    result = haven("ps")
    assert result.stdout.splitlines() == ["NAME    ID    SIZE    CONTEXT    SLOTS    KV/SLOT    UNTIL"]
    haven("run", "tiny:latest", "hi", input="")
    stats = EngineStats(4, 0, 0, kv_cache_type="q8_0", kv_bytes_per_slot=25_165_824)
    fake_server.engine.stats = lambda: stats  # type: ignore[method-assign]
    lines = haven("ps").stdout.splitlines()
    assert lines[1].split()[:2] == ["tiny:latest", "abababababab"] and lines[1].split()[-1] == "UTC"
    header, row = lines
    column = header.index("SLOTS")
    assert row[column:].split()[:4] == ["4", "25.2", "MB", "q8_0"]  # slots, then one slot's KV cache and type
    result = haven("stop", "Tiny")  # names are case-insensitive and the tag defaults to latest
    assert result.exit_code == 0 and result.stdout == "Stopped tiny:latest.\n"
    assert fake_server.app.state.model_manager.loaded() == [] and fake_server.engine.closed
    result = haven("stop", "tiny:latest")
    assert result.exit_code == 1 and "model 'tiny:latest' is not loaded" in result.stderr


def test_ps_and_stop_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAVEN_PORT", str(_free_port()))
    get_settings.cache_clear()
    assert "No server is running" in haven("ps").stdout
    result = haven("stop", "tiny:latest")
    assert result.exit_code == 1 and "no server is running" in result.stderr


# --- interactive commands -------------------------------------------------------------------------


def test_slash_commands_change_the_session() -> None:
    session = cli_client.ChatSession(model="m")
    out = io.StringIO()
    assert cli_client.handle_command("/set parameter temperature 0.3", session, out)
    assert cli_client.handle_command("/set parameter stop <end>", session, out)
    assert cli_client.handle_command("/set system You are terse.", session, out)
    assert cli_client.handle_command("/set nothink", session, out)
    assert cli_client.handle_command("/set hidethinking", session, out)
    assert session.options == {"temperature": 0.3, "stop": ["<end>"]}
    assert (session.system, session.think, session.hide_thinking) == ("You are terse.", False, True)
    body = session.request("hello")
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hello"},
    ]
    assert body["think"] is False and body["options"]["temperature"] == 0.3
    session.messages.append({"role": "user", "content": "old"})
    assert cli_client.handle_command("/clear", session, out) and session.messages == []
    assert cli_client.handle_command("/set bogus", session, out)
    assert cli_client.handle_command("/frobnicate", session, out)
    assert "Unknown /set option 'bogus'" in out.getvalue() and "Unknown command '/frobnicate'" in out.getvalue()
    assert cli_client.handle_command("/bye", session, out) is False


def test_print_reply_separates_thinking_and_content() -> None:
    chunks = [
        {"message": {"role": "assistant", "content": "", "thinking": "hmm"}, "done": False},
        {"message": {"role": "assistant", "content": "42"}, "done": False},
        {"message": {"role": "assistant", "content": ""}, "done": True, "eval_count": 2},
    ]
    out, err = io.StringIO(), io.StringIO()
    answer, final = cli_client.print_reply(iter(chunks), hide_thinking=False, out=out, err=err)
    assert (answer, out.getvalue(), final["eval_count"]) == ("42", "42\n", 2)
    assert err.getvalue() == "Thinking...\nhmm\n...done thinking.\n\n"


# --- interactive session in a pseudo-terminal --------------------------------------------------------


class Terminal:
    """`haven run` in a pty, read with a deadline (stdlib only: no pexpect dependency)."""

    def __init__(self, *args: str) -> None:
        import os
        import subprocess
        import sys

        self.master, slave = os.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from haven.cli.main import main; main()", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
        )
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 30.0) -> str:
        import os
        import select

        deadline = time.monotonic() + timeout
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"did not see {text!r}; output so far: {self.seen!r}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the child exited and the pty closed
                    break
        if text not in self.seen:
            raise AssertionError(f"did not see {text!r}; output so far: {self.seen!r}")
        before, _, after = self.seen.partition(text)
        self.seen = after
        return before

    def send(self, line: str) -> None:
        import os

        os.write(self.master, (line + "\n").encode())

    def close(self) -> int:
        import os

        code = self.process.wait(timeout=20)
        os.close(self.master)
        return code


def test_interactive_chat_in_a_terminal(fake_server: FakeServer, haven_env: Any) -> None:
    terminal = Terminal("run", "tiny:latest")
    try:
        terminal.expect("Type /? for help, /bye to exit.")
        terminal.expect(">>> ")
        terminal.send("/set system Be brief.")
        terminal.expect("Set system message.")
        terminal.send("hello")
        shown = terminal.expect("Hello world")
        # Thinking is shown dimmed before the answer on a terminal.
        assert "\x1b[2mThinking..." in shown and "Let me think." in shown
        terminal.send("/set hidethinking")
        terminal.expect("Set 'hidethinking' mode.")
        terminal.send("and again")
        shown = terminal.expect("Hello world")
        assert "Let me think." not in shown
        messages = fake_server.engine.rendered[-1]["messages"]
        assert messages == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "Hello world"},
            {"role": "user", "content": "and again"},
        ]
        terminal.send("/clear")
        terminal.expect("Cleared session context.")
        terminal.send("/bye")
        assert terminal.close() == 0
    finally:
        if terminal.process.poll() is None:
            terminal.process.kill()
    assert "hello" in (haven_env / "history").read_text()
