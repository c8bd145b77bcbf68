"""Settings: env prefix, bounds, masking, and the CLI flags derived from the fields."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from haven.cli.main import build_cli
from haven.cli.settings_flags import settings_from_options, settings_option
from haven.errors import ModelNotFoundError
from haven.settings import Settings, get_settings


def test_home_comes_from_env(haven_env: Path) -> None:
    assert Settings().home == haven_env
    assert Settings().models_dir == haven_env / "models"
    assert Settings().effective_database_url == f"sqlite:///{haven_env / 'haven.db'}"


def test_env_prefix_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAVEN_PARALLEL", "8")
    assert Settings().parallel == 8
    monkeypatch.setenv("HAVEN_PARALLEL", "0")
    with pytest.raises(ValidationError, match="parallel"):
        Settings()


def test_defaults_bind_loopback() -> None:
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8700
    assert settings.api_key is None


def test_every_field_is_documented() -> None:
    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undocumented == []


def test_masked_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAVEN_API_KEY", "sk-very-secret")
    monkeypatch.setenv("HAVEN_DATABASE_URL", "postgresql+psycopg://haven:pw123@db:5432/haven")
    values = Settings().masked()
    assert values["api_key"] == "********"
    assert values["database_url"] == "postgresql+psycopg://haven:********@db:5432/haven"
    assert "sk-very-secret" not in json.dumps(values)
    assert "pw123" not in json.dumps(values)


def test_get_settings_is_cached_and_clearable(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    assert get_settings() is first
    monkeypatch.setenv("HAVEN_PORT", "9001")
    get_settings.cache_clear()
    assert get_settings().port == 9001


def test_settings_flags_have_types_bounds_and_help() -> None:
    option = settings_option("parallel")
    assert option.opts == ["--parallel"]
    assert isinstance(option.type, click.IntRange)
    assert option.type.min == 1 and option.type.max == 256
    assert "HAVEN_PARALLEL" in (option.help or "")
    flag = settings_option("prefix_cache")
    assert flag.secondary_opts == ["--no-prefix-cache"]
    choice = settings_option("log_level")
    assert isinstance(choice.type, click.Choice)
    assert list(choice.type.choices) == ["debug", "info", "warning", "error"]


def test_every_setting_gets_a_flag() -> None:
    for name in Settings.model_fields:
        assert settings_option(name).name == name


def test_flags_override_env_only_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAVEN_PORT", "9100")
    assert settings_from_options({"port": None, "parallel": 2}).port == 9100
    assert settings_from_options({"port": 9200}).port == 9200
    with pytest.raises(click.BadParameter, match="port"):
        settings_from_options({"port": 70000})


def test_config_command_prints_masked_json(monkeypatch: pytest.MonkeyPatch, haven_env: Path) -> None:
    monkeypatch.setenv("HAVEN_HF_TOKEN", "hf_secret_token")
    result = CliRunner().invoke(build_cli(), ["config", "--json"])
    assert result.exit_code == 0, result.output
    values = json.loads(result.output)
    assert values["home"] == str(haven_env)
    assert values["hf_token"] == "********"
    assert "hf_secret_token" not in result.output


def test_haven_errors_print_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    cli = build_cli()
    assert isinstance(cli, click.Group)

    @cli.command("boom")
    def boom() -> None:
        raise ModelNotFoundError("model 'nope:latest' is not in the store; see `haven models list`")

    result = CliRunner().invoke(cli, ["boom"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: model 'nope:latest' is not in the store; see `haven models list`"
    assert "Traceback" not in result.output


def test_version_flag() -> None:
    result = CliRunner().invoke(build_cli(), ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == "haven 0.1.0"


def test_readme_settings_table_is_current() -> None:
    from haven.settings_doc import replace_table

    readme = Path(__file__).resolve().parents[2] / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert replace_table(text) == text, "run: python -m haven.settings_doc --write README.md"
