"""Imports point down only: the layer rules of the architecture, checked on every module.

Each top-level package of ``haven`` lists the Haven packages it may import; anything else is an
upward (or sideways) arrow and fails. ``errors`` is shared by every layer. Third-party frameworks
are fenced too: only the server speaks HTTP frameworks, only the engine touches llama.cpp.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HAVEN = Path(__file__).resolve().parents[2] / "haven"

# layer → the haven packages it may import (besides itself and ``haven.errors``).
# Order, bottom up: engine → models → chat → storage → accounts/conversations/securitylog → audit → server/web → cli.
ALLOWED: dict[str, set[str]] = {
    "engine": set(),  # its own narrow config (haven/engine/config.py), built by the server from Settings
    "models": {"engine", "egress", "settings"},
    "chat": {"engine", "models", "redaction", "settings"},
    "storage": {"settings"},
    "accounts": {"storage", "settings"},
    "conversations": {"storage", "accounts", "redaction", "settings"},
    "securitylog": {"storage", "settings"},
    "redaction": set(),
    "egress": {"settings"},
    "doctor": {"chat", "egress", "models", "storage", "settings"},
    "audit": {"chat", "storage", "models", "engine", "settings"},
    "web": set(),
    "server": {"engine", "models", "chat", "storage", "accounts", "conversations", "securitylog", "redaction",
               "egress", "doctor", "audit", "web", "settings", "settings_doc"},
    "cli": {"engine", "models", "chat", "storage", "accounts", "conversations", "securitylog", "redaction", "egress",
            "doctor", "audit", "server", "web", "settings", "settings_doc"},
}
SHARED = {"errors", "__init__"}
# Third-party modules a layer must never import.
FORBIDDEN_THIRD_PARTY: dict[str, tuple[str, ...]] = {
    "engine": ("fastapi", "starlette", "uvicorn", "httpx", "sqlalchemy"),
    "models": ("fastapi", "starlette", "sqlalchemy"),
    "chat": ("fastapi", "starlette", "sqlalchemy"),
    "storage": ("fastapi", "starlette", "llama_cpp"),
    "accounts": ("fastapi", "starlette", "llama_cpp"),
    "conversations": ("fastapi", "starlette", "llama_cpp"),
    "securitylog": ("fastapi", "starlette", "llama_cpp"),
    "audit": ("fastapi", "starlette", "llama_cpp"),
    "server": ("llama_cpp",),
}
# The server reaches the engine only through its contract (and the default loader, imported lazily).
SERVER_ENGINE_MODULES = {"haven.engine.protocol", "haven.engine.engine", "haven.engine.config"}


def imported_modules(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def layer_modules(layer: str) -> list[Path]:
    if (HAVEN / layer).is_dir():
        return sorted((HAVEN / layer).rglob("*.py"))
    return [HAVEN / f"{layer}.py"] if (HAVEN / f"{layer}.py").exists() else []  # a layer not written yet


def haven_package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "haven" and len(parts) > 1 else ("__init__" if module == "haven" else None)


def violations_of(layer: str) -> list[str]:
    allowed = ALLOWED[layer] | SHARED | {layer}
    found = []
    for path in layer_modules(layer):
        for name in imported_modules(path):
            package = haven_package(name)
            if package is not None and package not in allowed:
                found.append(f"haven/{path.relative_to(HAVEN)} imports {name}")
            banned = FORBIDDEN_THIRD_PARTY.get(layer, ())
            if any(name == b or name.startswith(b + ".") for b in banned):
                found.append(f"haven/{path.relative_to(HAVEN)} imports {name}")
    return found


def test_every_package_has_a_layer() -> None:
    packages = {p.stem if p.suffix == ".py" else p.name for p in HAVEN.iterdir()
                if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert packages - set(ALLOWED) - SHARED - {"settings", "settings_doc"} == set()


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_point_down(layer: str) -> None:
    assert violations_of(layer) == []


def test_server_uses_the_engine_only_through_its_protocol() -> None:
    violations = [
        f"{path.relative_to(HAVEN.parent)} imports {name}"
        for path in layer_modules("server")
        for name in imported_modules(path)
        if name.startswith("haven.engine") and name not in SERVER_ENGINE_MODULES
    ]
    assert violations == []


def test_the_rule_catches_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "storage"
    bad.mkdir()
    (bad / "leak.py").write_text("from haven.audit.records import SuiteItem\nimport fastapi\n", encoding="utf-8")
    monkeypatch.setattr(__import__(__name__, fromlist=["HAVEN"]), "HAVEN", tmp_path)
    assert violations_of("storage") == [
        "haven/storage/leak.py imports haven.audit.records", "haven/storage/leak.py imports fastapi"]
