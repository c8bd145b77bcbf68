"""``haven models set`` and the defaults in ``haven models show``; ``haven models pull NAME`` by Ollama
name, and Ctrl-C during a pull (a real subprocess and SIGINT)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from haven.cli.main import build_cli
from haven.models.manifest import ModelDefaults
from haven.models.store import ModelStore, snapshot
from haven.settings import get_settings
from tests.support.fake_ollama_registry import FakeOllamaRegistry
from tests.support.tiny_gguf import write_tiny_gguf


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(), list(args), env={"COLUMNS": "200"})
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def store(haven_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelStore:
    monkeypatch.setenv("HAVEN_TRIAL_LOAD_TIMEOUT_SECONDS", "0")  # header-only test files: no trial load
    get_settings.cache_clear()
    store = ModelStore.from_settings(get_settings())
    store.import_file(write_tiny_gguf(tmp_path / "t.gguf"), "tiny")
    return store


def test_set_then_show(store: ModelStore) -> None:
    code, output = _run(
        "models", "set", "tiny", "--system", "Be brief.", "--param", "temperature=0.6", "--param", "top_k=40",
        "--stop", "END", "--stop", "<|x|>",
    )  # fmt: skip
    assert code == 0, output
    assert store.get("tiny").defaults == ModelDefaults(
        system="Be brief.", stop=("END", "<|x|>"), parameters={"temperature": 0.6, "top_k": 40}
    )
    code, output = _run("models", "show", "tiny")
    assert code == 0
    assert (
        'defaults (applied to requests that do not set them) system = "Be brief." stop = "END" stop = "<|x|>"' in output
    )
    assert "temperature = 0.6 top_k = 40" in output
    assert json.loads(CliRunner().invoke(build_cli(), ["models", "show", "tiny", "--json"]).output)["defaults"] == {
        "system": "Be brief.", "template": None, "stop": ["END", "<|x|>"],
        "parameters": {"temperature": 0.6, "top_k": 40},
    }  # fmt: skip

    code, output = _run("models", "set", "tiny", "--unset", "top_k", "--unset", "stop", "--param", "temperature=1")
    assert code == 0, output
    assert store.get("tiny").defaults == ModelDefaults(system="Be brief.", parameters={"temperature": 1.0})
    code, output = _run("models", "set", "tiny", "--reset")
    assert code == 0 and store.get("tiny").defaults.empty
    assert "defaults (applied to requests that do not set them) (none)" in _run("models", "show", "tiny")[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "temprature=0.6"], "error: --param temprature: unknown option (known: frequency_penalty,"),
        (["--param", "top_k=0.5"], "error: --param top_k=0.5: the value must be a whole number"),
        (["--param", "temperature=hot"], "error: --param temperature=hot: the value must be a number"),
        (["--param", "temperature=nan"], "must be finite"),
        (["--param", "temperature"], "use NAME=VALUE"),
        (["--unset", "colour"], "error: --unset colour: not a default"),
        (["--stop", ""], "error: --stop: at most 16 non-empty strings"),
    ],
)
def test_bad_values_are_one_line_and_change_nothing(store: ModelStore, args: list[str], message: str) -> None:
    before = snapshot(store.root)
    code, output = _run("models", "set", "tiny", "--system", "x", *args)
    assert code == 1 and message in output
    assert snapshot(store.root) == before


def test_set_on_a_missing_model(store: ModelStore) -> None:
    code, output = _run("models", "set", "nosuch", "--system", "x")
    assert code == 1 and "error: model nosuch:latest is not in the store" in output


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[FakeOllamaRegistry]:
    with FakeOllamaRegistry() as fake:
        fake.add_model("qwen2.5", "0.5b", write_tiny_gguf(tmp_path / "m.gguf").read_bytes(),
                       params={"temperature": 0.7, "mirostat_mode": 2}, system="You are Qwen.")  # fmt: skip
        yield fake


def test_pull_by_ollama_name_shows_its_defaults(haven_env: Path, registry: FakeOllamaRegistry, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HAVEN_OLLAMA_REGISTRY", registry.endpoint)
    monkeypatch.setenv("HAVEN_TRIAL_LOAD_TIMEOUT_SECONDS", "0")  # the registry serves a header-only test file
    get_settings.cache_clear()
    code, output = _run("models", "pull", "qwen2.5:0.5b")
    assert code == 0, output
    assert "ignoring options Haven does not support: mirostat_mode" in output and "pulled qwen2.5:0.5b" in output
    shown = _run("models", "show", "qwen2.5:0.5b")[1]
    assert 'system = "You are Qwen." temperature = 0.7' in shown


def test_ctrl_c_stops_a_pull_in_one_line_and_the_next_pull_resumes(
    haven_env: Path, registry: FakeOllamaRegistry
) -> None:
    registry.stall_after = 600
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    env.update(HAVEN_HOME=str(haven_env), HAVEN_OLLAMA_REGISTRY=registry.endpoint, HAVEN_DOWNLOAD_TIMEOUT_SECONDS="60",
               HAVEN_TRIAL_LOAD_TIMEOUT_SECONDS="0")
    cmd = [sys.executable, "-c", "from haven.cli.main import main; main()", "models", "pull", "qwen2.5:0.5b"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    blobs = haven_env / "models" / "blobs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(
        p.suffix == "" and p.stat().st_size == 600 for p in blobs.glob("partial-*")
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    lines = [line for line in (out + err).splitlines() if line.strip() and not line.startswith("ignoring")]
    size = len(registry.files[("blobs", "0")].data)
    assert lines == [
        f"pull interrupted at 600 of {size:,} bytes; what was downloaded is kept: run the same command again to resume"
    ]
    assert not list(blobs.glob("*.lock"))
    registry.stall_after = None
    registry.release.set()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert registry.byte_requests()[-1]["range"] == "bytes=600-"
