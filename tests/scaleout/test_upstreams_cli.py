"""``haven upstreams``: add, list, remove, check — and every bad input as one readable line, file untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from haven.chat.upstreams import UpstreamsFile
from haven.cli.main import build_cli
from tests.scaleout.conftest import FakeUpstream


def haven(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(), list(args))
    return result.exit_code, result.output


def test_add_list_remove_round_trip(haven_env: Path) -> None:
    code, out = haven("upstreams", "add", "gpu1", "--url", "http://10.0.0.5:8000/v1", "--kind", "vllm",
                      "--api-key-env", "GPU1_KEY", "--model", "qwen2.5-72b", "--weight", "2")
    assert code == 0 and "added upstream gpu1" in out
    text = (haven_env / "upstreams.yaml").read_text()
    assert "GPU1_KEY" in text and "api_key:" not in text
    code, out = haven("upstreams", "list")
    assert code == 0 and "gpu1" in out and "vllm" in out and "qwen2.5-72b" in out
    assert haven("upstreams", "remove", "gpu1")[0] == 0
    assert UpstreamsFile.load(haven_env).upstreams == []


@pytest.mark.parametrize(("args", "message"), [
    (["Bad Name", "--url", "http://h/v1"], "must be lower-case"),
    (["a", "--url", "ftp://h/v1"], "must be http(s)"),
    (["a", "--url", "http://user:pw@h/v1"], "credentials in api_key_env"),
    (["a", "--url", "http://h/v1", "--kind", "tgi"], "kind must be one of"),
    (["a", "--url", "http://h/v1", "--api-key-env", "not a var"], "not a variable name"),
    (["a", "--url", "http://h/v1", "--weight", "0"], "weight"),
])
def test_bad_upstreams_are_refused_in_one_line_and_nothing_is_written(haven_env: Path, args: list[str],
                                                                      message: str) -> None:
    code, out = haven("upstreams", "add", *args)
    assert code == 1 and message in out and len(out.strip().splitlines()) == 1
    assert not (haven_env / "upstreams.yaml").exists()


def test_a_damaged_file_is_a_clear_error(haven_env: Path) -> None:
    haven_env.mkdir(parents=True, exist_ok=True)
    (haven_env / "upstreams.yaml").write_text("upstreams: [{name: a}]\n")
    code, out = haven("upstreams", "list")
    assert code == 1 and "needs a name and a url" in out
    (haven_env / "upstreams.yaml").write_text("upstreams: {\n")
    assert "not valid YAML" in haven("upstreams", "list")[1]


@pytest.mark.e2e
def test_check_reports_each_upstream_in_one_line(haven_env: Path, fakes: list[FakeUpstream]) -> None:
    assert haven("upstreams", "add", "live", "--url", fakes[0].url, "--kind", "vllm")[0] == 0
    assert haven("upstreams", "add", "gone", "--url", "http://127.0.0.1:9/v1", "--connect-timeout", "1")[0] == 0
    missing_key = ["--api-key-env", "HAVEN_TEST_NO_SUCH_KEY"]
    assert haven("upstreams", "add", "keyless", "--url", fakes[1].url, *missing_key)[0] == 0
    code, out = haven("upstreams", "check")
    lines = out.strip().splitlines()
    assert code == 1
    assert lines[0].startswith("ok") and "live: remote-model" in lines[0]
    assert lines[1].startswith("fail") and "gone: upstream gone did not answer" in lines[1]
    assert lines[2].startswith("fail") and "HAVEN_TEST_NO_SUCH_KEY is not set" in lines[2]
