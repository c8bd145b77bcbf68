"""End-to-end fixtures: a real ``haven serve`` subprocess on a free loopback port.

``start_haven_server(home, models, **settings)`` imports GGUF files into ``home`` with
``haven models import``, starts ``haven serve`` with the given settings (as HAVEN_* variables),
polls ``/health`` and yields a :class:`HavenServer` - the base URL as a string, with ``home`` and
``log_path`` attached - then terminates the process. ``haven_server`` is one such server per test module
with three tiny random-weight models: ``tiny`` (qwen2, Qwen 2.5 template), ``r1`` (DeepSeek-R1 template)
and ``llama`` (llama, Llama 3 template); ``tiny`` is the default model.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

HAVEN = [sys.executable, "-c", "from haven.cli.main import main; main()"]
START_TIMEOUT = 90.0


class HavenServer(str):
    """The base URL (``http://127.0.0.1:PORT``), plus where the server keeps its data and log."""

    home: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(home: Path, settings: Mapping[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAVEN_")}
    env["HAVEN_HOME"] = str(home)
    env["HAVEN_THREADS"] = "1"  # the test machines are small and shared
    for key, value in settings.items():
        env[f"HAVEN_{key.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@contextmanager
def start_haven_server(home: Path, models: Mapping[str, Path], **settings: Any) -> Iterator[HavenServer]:
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = server_env(home, {"port": port, **settings})
    for name, path in models.items():
        subprocess.run(
            [*HAVEN, "models", "import", str(path), "--name", name], env=env, check=True, capture_output=True
        )
    log_path = home / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*HAVEN, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = HavenServer(f"http://127.0.0.1:{port}")
    url.home, url.log_path, url.process = home, log_path, process
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"haven serve exited with {process.returncode}:\n{url.log()}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"haven serve did not answer /health within {START_TIMEOUT:.0f} s:\n{url.log()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def haven_server(
    make_test_model: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HavenServer]:
    models = {
        "tiny": make_test_model(),
        "r1": make_test_model(template="deepseek-r1"),
        "llama": make_test_model(arch="llama", template="llama3"),
    }
    home = tmp_path_factory.mktemp("haven-e2e")
    with start_haven_server(
        home, models, default_model="tiny", parallel=2, context_length=2048, max_loaded_models=3
    ) as url:
        yield url
