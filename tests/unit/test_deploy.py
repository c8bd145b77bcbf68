"""The deployment files are checked as far as this machine allows: YAML parses, every HAVEN_* setting they set
exists, every ``haven …`` command line in them is a valid Haven command, every upstreams.yaml loads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from haven.chat.upstreams import Upstream
from haven.cli.main import build_cli
from haven.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
YAML_FILES = sorted(p for p in DEPLOY.rglob("*.yaml"))


def documents(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def haven_commands(path: Path) -> list[list[str]]:
    found = []
    for document in documents(path):
        for node in walk(document):
            if isinstance(node, dict) and isinstance(node.get("command"), list) and node["command"][:1] == ["haven"]:
                found.append([str(a) for a in node["command"][1:]])
    return found


def test_there_are_files_for_every_shape() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES}
    assert {"gpu-box/compose.yaml", "cluster/compose.yaml", "kubernetes/haven.yaml", "kubernetes/vllm.yaml",
            "gpu-box/upstreams.yaml", "cluster/upstreams.yaml"} <= names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_file_parses(path: Path) -> None:
    assert documents(path)


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_haven_setting_named_exists(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    names = set(re.findall(r"\bHAVEN_([A-Z_]+)\b", text))
    unknown = {f"HAVEN_{n}" for n in names if n.lower() not in Settings.model_fields}
    assert unknown == set()


@pytest.mark.parametrize("path", [p for p in YAML_FILES if haven_commands(p)],
                         ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_haven_command_line_is_valid(path: Path) -> None:
    cli = build_cli()
    for args in haven_commands(path):
        context = cli.make_context("haven", list(args), resilient_parsing=False)
        with context:
            name, command, rest = cli.resolve_command(context, args)  # type: ignore[attr-defined]
            assert command is not None, args
            while hasattr(command, "resolve_command") and rest:
                sub_context = command.make_context(name, list(rest), parent=context)
                name, command, rest = command.resolve_command(sub_context, rest)
            command.make_context(name, list(rest), parent=context)  # raises on an unknown option


@pytest.mark.parametrize("path", [p for p in YAML_FILES if p.name == "upstreams.yaml"],
                         ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_upstreams_file_loads(path: Path) -> None:
    upstreams = [Upstream.from_dict(item) for item in documents(path)[0]["upstreams"]]
    assert upstreams and all(u.kind == "vllm" for u in upstreams)


def test_kubernetes_configmap_upstreams_load() -> None:
    configmap = next(d for d in documents(DEPLOY / "kubernetes" / "haven.yaml") if d["kind"] == "ConfigMap")
    items = yaml.safe_load(configmap["data"]["upstreams.yaml"])["upstreams"]
    assert [Upstream.from_dict(i).name for i in items] == ["cluster"]
