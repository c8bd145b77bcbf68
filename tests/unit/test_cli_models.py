"""``haven models import|list|show|rm|verify|pull`` through the real CLI (click's runner)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from haven.cli.main import build_cli
from haven.cli.models import human_count, human_size
from haven.models.hashing import sha256_file
from haven.models.store import snapshot
from tests.support.fake_hub import FakeHub
from tests.support.tiny_gguf import SSTI_GLOBALS, write_tiny_gguf


def _run(*args: str) -> tuple[int, str]:
    # The tiny files are header-only (not runnable): no trial load here, see test_trial_load.py for it.
    env = {"COLUMNS": "200", "HAVEN_TRIAL_LOAD_TIMEOUT_SECONDS": "0"}
    result = CliRunner().invoke(build_cli(), list(args), env=env)
    return result.exit_code, result.output


def _flat(output: str) -> str:
    return re.sub(r"\s+", " ", output)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")


def test_import_list_show_verify_rm(haven_env: Path, tiny: Path) -> None:
    sha = sha256_file(tiny)
    code, output = _run("models", "import", str(tiny), "--name", "Tiny:One")
    assert code == 0, output
    assert f"imported tiny:one (1.2 KB, qwen2, 56 parameters, F32) sha256:{sha[:12]}" in _flat(output)

    code, output = _run("models", "list")
    assert code == 0, output
    header = _flat(output)
    for column in ("NAME", "SIZE", "ARCHITECTURE", "PARAMETERS", "QUANTIZATION", "CONTEXT", "MODIFIED"):
        assert column in header
    assert re.search(r"tiny:one\s+1\.2 KB\s+qwen2\s+56\s+F32\s+256\s+\d{4}-\d\d-\d\d \d\d:\d\d", output)

    code, output = _run("models", "show", "tiny:one")
    assert code == 0, output
    flat = _flat(output)
    assert f"sha256 {sha}" in flat and "architecture qwen2" in flat and "template safe" in flat
    assert "3 <|im_start|>" in flat and "4 <|im_end|>" in flat
    assert "qwen2.context_length = 256" in flat and "{% for m in messages %}" in output

    code, output = _run("models", "show", "tiny:one", "--json")
    assert code == 0 and json.loads(output)["sha256"] == sha

    assert _run("models", "verify", "tiny:one") == (0, f"tiny:one: ok (sha256:{sha[:12]})\n")

    code, output = _run("models", "rm", "tiny:one")
    assert (code, output) == (0, "removed tiny:one\n")
    assert not list((haven_env / "models" / "blobs").iterdir())
    code, output = _run("models", "list")
    assert code == 0 and "no models yet" in output


def test_verify_reports_a_damaged_blob(haven_env: Path, tiny: Path) -> None:
    assert _run("models", "import", str(tiny), "--name", "m")[0] == 0
    blob = next((haven_env / "models" / "blobs").iterdir())
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x01")
    code, output = _run("models", "verify", "m")
    assert code == 1 and "error: m:latest is damaged" in _flat(output)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models", "show", "nope"], "error: model nope:latest is not in the store"),
        (["models", "rm", "nope:v1"], "error: model nope:v1 is not in the store"),
        (["models", "import", "/does/not/exist.gguf"], "error: /does/not/exist.gguf: no such file"),
        (["models", "show", "../x"], "error: invalid model name '../x': '/' and '\\' are not allowed"),
    ],
)
def test_errors_are_one_line(haven_env: Path, args: list[str], message: str) -> None:
    code, output = _run(*args)
    assert code == 1
    assert output.strip().count("\n") == 0 and message in output


def test_bad_imports_leave_the_store_unchanged(haven_env: Path, tiny: Path, tmp_path: Path) -> None:
    assert _run("models", "import", str(tiny), "--name", "keep")[0] == 0
    before = snapshot(haven_env / "models")
    junk = tmp_path / "junk.gguf"
    junk.write_text("hello")
    evil = write_tiny_gguf(tmp_path / "evil.gguf", template=SSTI_GLOBALS)
    for args, message in [
        ([str(junk)], "is not a valid GGUF model: the file has only 5 bytes"),
        ([str(tiny), "--name", "a\x07b"], "control characters are not allowed"),
        ([str(evil)], "failed the safety scan"),
    ]:
        code, output = _run("models", "import", *args)
        assert code == 1 and message in _flat(output), output
        assert snapshot(haven_env / "models") == before

    code, output = _run("models", "import", str(evil), "--allow-unsafe-template")
    assert code == 0 and "warning: unsafe chat template accepted" in _flat(output)
    code, output = _run("models", "show", "evil")
    assert "template UNSAFE" in _flat(output)


@pytest.fixture
def hub(tiny: Path) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add("o/r", "model-Q4_K_M.gguf", tiny)
        yield fake


def test_pull_through_the_cli(haven_env: Path, hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    from haven.settings import get_settings

    monkeypatch.setenv("HAVEN_HF_ENDPOINT", hub.endpoint)
    get_settings.cache_clear()
    code, output = _run("models", "pull", "hf.co/o/r:q4_k_m")
    assert code == 0, output
    assert "pulled r:q4_k_m (1.2 KB, qwen2, F32)" in _flat(output)
    assert _run("models", "verify", "r:q4_k_m")[0] == 0


def test_pull_offline(haven_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from haven.settings import get_settings

    monkeypatch.setenv("HAVEN_HF_ENDPOINT", "http://127.0.0.1:9")
    get_settings.cache_clear()
    code, output = _run("models", "pull", "hf://o/r/m.gguf")
    assert code == 1
    assert _flat(output).strip() == (
        "error: cannot reach http://127.0.0.1:9: connection refused; "
        "Haven works offline with models you import: haven models import PATH"
    )


@pytest.mark.parametrize(
    ("count", "text"), [(494_032_768, "494M"), (7_615_616_512, "7.6B"), (156_224, "156K"), (56, "56"), (1_500, "1.5K")]
)
def test_human_count(count: int, text: str) -> None:
    assert human_count(count) == text


def test_human_size() -> None:
    assert [human_size(n) for n in (512, 1152, 677_856, 3_000_000_000)] == ["512 B", "1.2 KB", "677.9 KB", "3.0 GB"]
