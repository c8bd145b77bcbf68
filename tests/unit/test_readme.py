"""The README's generated parts (module tree, settings table) match the code."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_module_tree_is_current() -> None:
    spec = importlib.util.spec_from_file_location("readme_tree", ROOT / "scripts" / "readme_tree.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert module.replace_tree(text) == text, "run: python scripts/readme_tree.py --write README.md"


def test_every_module_has_a_docstring() -> None:
    import ast

    missing = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "haven").rglob("*.py"))
        if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert missing == []
