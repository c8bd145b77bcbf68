"""Fake vLLM upstreams as real processes on loopback (tests/support/fake_vllm.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakeUpstream:
    name: str
    url: str
    process: subprocess.Popen[bytes]

    def mode(self, mode: str) -> None:
        httpx.post(self.url.removesuffix("/v1") + "/control", json={"mode": mode}, timeout=5).raise_for_status()

    def received(self) -> list[dict]:
        return httpx.get(self.url.removesuffix("/v1") + "/control", timeout=5).json()["received"]

    def peers(self) -> list[int]:
        """The client port of each chat request received (one port: one reused connection)."""
        return httpx.get(self.url.removesuffix("/v1") + "/control", timeout=5).json()["peers"]


def start_fake(name: str, models: str = "remote-model") -> FakeUpstream:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.support.fake_vllm", "--port", str(port), "--name", name,
                                "--models", models], cwd=ROOT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url.removesuffix("/v1") + "/health", timeout=1).status_code == 200:
                return FakeUpstream(name, url, process)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"fake upstream {name} did not start")


@pytest.fixture(scope="module")
def fakes() -> Iterator[list[FakeUpstream]]:
    started = [start_fake("gpu1"), start_fake("gpu2")]
    yield started
    for fake in started:
        fake.process.kill()
        fake.process.wait()


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "fakes" in request.fixturenames:
        for fake in request.getfixturevalue("fakes"):
            if fake.process.poll() is None:
                fake.mode("ok")
