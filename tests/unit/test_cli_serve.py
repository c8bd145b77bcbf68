"""``haven serve`` flags and the refusal to serve publicly without an API key (uvicorn is never started)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from click.testing import CliRunner

from haven.cli.main import build_cli


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(), list(args))
    return result.exit_code, re.sub(r"[\s│]+", " ", result.output)


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    # serve() points haven's loggers at stderr; in a test run that would hide them from caplog elsewhere.
    monkeypatch.setattr("haven.server.logging.configure_logging", lambda settings: None)
    return calls


def test_public_host_without_key_refuses_to_start(uvicorn_calls: list[dict[str, Any]]) -> None:
    code, output = _run("serve", "--host", "0.0.0.0")
    assert code == 1
    assert "error: refusing to serve on 0.0.0.0 without an API key" in output
    assert uvicorn_calls == []


def test_flags_become_settings(uvicorn_calls: list[dict[str, Any]]) -> None:
    code, output = _run("serve", "--host", "0.0.0.0", "--api-key", "k" * 32, "--port", "9123", "--parallel", "3")
    assert code == 0, output
    [call] = uvicorn_calls
    assert (call["host"], call["port"], call["access_log"]) == ("0.0.0.0", 9123, False)
    settings = call["app"].state.settings
    assert settings.parallel == 3 and settings.api_key.get_secret_value() == "k" * 32


def test_out_of_range_flag_is_a_usage_error(uvicorn_calls: list[dict[str, Any]]) -> None:
    code, output = _run("serve", "--port", "70000")
    assert code == 2 and "70000 is not in the range 1<=x<=65535" in output
    assert uvicorn_calls == []
