"""Imports point down only: the layer rules of the architecture, checked on every module.

``cli`` and ``server`` → ``storage``, ``audit``, ``models`` → ``engine``; ``errors`` and
``settings`` are shared. The server reaches the engine through ``haven.engine.protocol`` (plus
the default loader ``haven.engine.engine``, imported lazily), never through llama.cpp.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HAVEN = Path(__file__).resolve().parents[2] / "haven"

# layer → module prefixes it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "engine": ("haven.models", "haven.server", "haven.cli", "haven.audit", "haven.storage", "fastapi", "starlette",
               "uvicorn"),
    "models": ("haven.server", "haven.cli", "haven.audit", "haven.storage", "fastapi", "starlette"),
    "storage": ("haven.server", "haven.cli", "fastapi", "starlette", "llama_cpp"),
    "audit": ("haven.server", "haven.cli", "fastapi", "llama_cpp"),
    "server": ("haven.cli", "llama_cpp"),
}
SERVER_ENGINE_MODULES = {"haven.engine.protocol", "haven.engine.engine"}


def imported_modules(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def layer_modules(layer: str) -> list[Path]:
    return sorted((HAVEN / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down(layer: str) -> None:
    violations = [
        f"{path.relative_to(HAVEN.parent)} imports {name}"
        for path in layer_modules(layer)
        for name in imported_modules(path)
        if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[layer])
    ]
    assert violations == []


def test_server_uses_the_engine_only_through_its_protocol() -> None:
    violations = [
        f"{path.relative_to(HAVEN.parent)} imports {name}"
        for path in layer_modules("server")
        for name in imported_modules(path)
        if name.startswith("haven.engine") and name not in SERVER_ENGINE_MODULES
    ]
    assert violations == []


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from haven.server.app import create_app\nimport fastapi\n", encoding="utf-8")
    assert imported_modules(bad) == ["haven.server.app", "fastapi"]
