"""``haven doctor``: all ok on a default install, and one finding (with its fix) for each problem planted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from haven.doctor import Finding, run_checks
from haven.doctor.checks import check_telemetry
from haven.models.store import ModelStore
from haven.settings import Settings
from tests.support.tiny_gguf import write_tiny_gguf

HAVEN = [sys.executable, "-c", "from haven.cli.main import main; main()"]


def haven(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    environ.update({"HAVEN_HOME": str(home), "HAVEN_TRIAL_LOAD_TIMEOUT_SECONDS": "0", **(env or {})})
    return subprocess.run([*HAVEN, *args], env=environ, capture_output=True, text=True, timeout=120)


def by_check(findings: list[Finding], check: str) -> list[Finding]:
    return [f for f in findings if f.check == check]


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """A home made the way a user makes one: the CLI imports a model and opens the database."""
    home = tmp_path / "home"
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    assert haven(home, "models", "import", str(model), "--name", "tiny").returncode == 0
    assert haven(home, "audit", "runs").returncode == 0  # creates and migrates haven.db
    return home


def test_a_default_install_is_all_ok(installed: Path) -> None:
    done = haven(installed, "doctor", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert [(f["check"], f["status"]) for f in report["findings"] if f["status"] != "ok"] == []
    assert {f["check"] for f in report["findings"]} >= {"bind", "api key", "egress", "upstreams", "database",
                                                        "encryption", "permissions", "models", "telemetry", "versions"}
    assert (installed / "haven.db").stat().st_mode & 0o077 == 0  # the CLI creates private files


def test_the_human_screen_names_every_check(installed: Path) -> None:
    done = haven(installed, "doctor")
    assert done.returncode == 0
    for word in ("bind", "egress", "permissions", "models", "telemetry"):
        assert word in done.stdout


def test_a_key_file_readable_by_others_fails_with_the_fix(installed: Path) -> None:
    key = installed / "local.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    done = haven(installed, "doctor", "--json")
    bad = [f for f in json.loads(done.stdout)["findings"] if f["status"] == "fail"]
    assert done.returncode == 1
    assert bad == [{"check": "permissions", "status": "fail", "detail": f"{key} is accessible to other users "
                    "(-rw-r--r--)", "fix": f"chmod 600 {key}"}]


@pytest.mark.parametrize(("host", "status"), [("0.0.0.0", "fail"), ("127.0.0.1", "warn")])
def test_a_weak_api_key_is_reported(tmp_path: Path, host: str, status: str) -> None:
    findings = run_checks(Settings(home=tmp_path, host=host, api_key="a"), verify_hashes=False)
    [finding] = by_check(findings, "api key")
    assert finding.status == status and "weak" in finding.detail and "32 characters" in finding.fix


def test_a_strong_api_key_on_a_public_bind_warns_only_about_the_bind(tmp_path: Path) -> None:
    findings = run_checks(Settings(home=tmp_path, host="0.0.0.0", api_key="q7Zr2LwP9xKd4TmB8vNc3YhJ6sFg1QeR5uWa"),
                          verify_hashes=False)
    assert by_check(findings, "api key")[0].status == "ok"
    assert by_check(findings, "bind")[0].status == "warn"


def test_an_upstream_on_another_host_is_said_to_receive_data(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, egress="allowlist", egress_allow=["gpu1.example:8000", "127.0.0.1:9000"])
    leaving = by_check(run_checks(settings, verify_hashes=False), "data leaves")
    assert [f.detail for f in leaving] == ["requests may leave this machine for gpu1.example:8000"]
    assert leaving[0].status == "warn" and leaving[0].fix


def test_an_upstream_on_another_machine_is_said_to_receive_chats(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "upstreams.yaml").write_text(yaml.safe_dump({"upstreams": [
        {"name": "gpu1", "url": "http://10.0.0.5:8000/v1", "kind": "vllm", "models": ["qwen2.5-72b"]},
        {"name": "here", "url": "http://127.0.0.1:8001/v1"}]}))
    leaving = by_check(run_checks(Settings(home=tmp_path), verify_hashes=False), "data leaves")
    assert [f.detail for f in leaving] == ["chats for qwen2.5-72b go to upstream gpu1 at 10.0.0.5 (personal data "
                                           "masked)"]
    assert "haven upstreams remove gpu1" in leaving[0].fix


def test_a_model_whose_blob_changed_fails_its_hash_check(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, trial_load_timeout_seconds=0)
    store = ModelStore.from_settings(settings)
    manifest = store.import_file(write_tiny_gguf(tmp_path / "tiny.gguf"), "tiny")
    blob = store.blob_path(manifest)
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    [finding] = by_check(run_checks(settings), "model hash")
    assert finding.status == "fail" and "tiny:latest" in finding.detail and "haven models rm" in finding.fix
    assert by_check(run_checks(settings, verify_hashes=False), "model hash") == []


def test_a_remote_database_is_said_to_hold_data_elsewhere(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url="postgresql+psycopg://haven:pw@db.example:5432/haven")
    [finding] = by_check(run_checks(settings, verify_hashes=False), "database")
    assert finding.status == "warn" and "db.example" in finding.detail


def test_telemetry_turned_on_by_the_environment_is_reported() -> None:
    assert [f.status for f in check_telemetry({})] == ["ok"]
    turned_on = check_telemetry({"LITELLM_TELEMETRY": "True", "DO_NOT_TRACK": "0"})
    if "litellm" in turned_on[0].detail:  # litellm is installed here (a dev dependency of the compatibility tests)
        assert [f.detail for f in turned_on[1:]] == ["LITELLM_TELEMETRY=True turns litellm's telemetry on for "
                                                     "Haven's server", "DO_NOT_TRACK=0"]
    else:
        assert [f.detail for f in turned_on[1:]] == ["DO_NOT_TRACK=0"]
