"""Fixtures shared by every tier.

* ``haven_env`` (autouse): HAVEN_HOME in a temp dir, every other HAVEN_* variable scrubbed,
  settings cache cleared, so no test sees the developer's real store or configuration.
* ``make_test_model``: builds GGUF files with the project's own factory (random weights,
  real architectures and templates), cached per session by their parameters.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from haven.settings import get_settings

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def haven_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for key in list(os.environ):
        if key.startswith("HAVEN_"):
            monkeypatch.delenv(key)
    home = tmp_path / "haven-home"
    monkeypatch.setenv("HAVEN_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def make_test_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make_test_model(arch="qwen2", size="tiny", quant="f32", template="qwen2.5", seed=0)`` → path."""
    from haven.models.factory import make_model

    cache_dir = tmp_path_factory.mktemp("models")
    built: dict[tuple[str, str, str, str, int], Path] = {}

    def build(
        arch: str = "qwen2", size: str = "tiny", quant: str = "f32", template: str = "qwen2.5", seed: int = 0
    ) -> Path:
        key = (arch, size, quant, template, seed)
        if key not in built:
            out = cache_dir / f"{arch}-{size}-{quant}-{template}-{seed}.gguf"
            built[key] = make_model(out, arch=arch, size=size, quant=quant, template=template, seed=seed)
        return built[key]

    return build


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared datasets not present at {SHARED_DATASETS} (a user checkout has no shared/)")
    return SHARED_DATASETS
