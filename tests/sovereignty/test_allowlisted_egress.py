"""With one allowlisted upstream, Haven's connections go to loopback and that upstream's address only.

The flows (tests/support/allowlisted_flows.py) run in a network namespace where two non-loopback addresses stand
in for two other machines: the allowlisted upstream's, which serves the model chatted with through both APIs,
and a decoy's, which listens too (so only the egress guard stands between it and the server). strace records
every connect() of the server and all its threads.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sovereignty.test_zero_egress import connected_addresses
from tests.support.allowlisted_flows import DECOY, UPSTREAM
from tests.support.netns import in_netns, requires_netns

pytestmark = [pytest.mark.e2e, pytest.mark.slow, requires_netns,
              pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (Debian package strace)")]


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    home = tmp_path_factory.mktemp("allowlisted-home")
    traces = tmp_path_factory.mktemp("allowlisted-traces")
    done = subprocess.run(in_netns([sys.executable, "-m", "tests.support.allowlisted_flows", str(home), str(traces)],
                                   addresses=(UPSTREAM, DECOY)),
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), traces


def _loopback_or(address: str, allowed: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d
        ip = ip.ipv4_mapped
    return ip.is_loopback or str(ip) == allowed


def test_every_flow_reaches_the_allowlisted_upstream(flows: tuple[dict, Path]) -> None:
    results, _ = flows
    assert results["models"] == ["remote-model"]
    assert results["openai_chat"].startswith("gpu1: hi")
    assert results["openai_stream"].startswith("gpu1: hi")
    assert results["ollama_chat"].startswith("gpu1: hi")
    assert results["upstream_received"] == 3


def test_connections_go_to_loopback_and_the_upstream_only(flows: tuple[dict, Path]) -> None:
    _, traces = flows
    addresses = connected_addresses(traces / "serve.strace")
    assert UPSTREAM in addresses  # the trace demonstrably saw the upstream traffic
    others = {a for a in addresses if not _loopback_or(a, UPSTREAM)}
    assert others == set()


def test_a_reachable_host_that_is_not_allowlisted_is_refused_before_connect(flows: tuple[dict, Path]) -> None:
    results, traces = flows
    assert results["probe"].startswith(f"refused: outbound connection to {DECOY}:8713 refused by HAVEN_EGRESS")
    assert results["serve_log_refusals"] >= 1
    assert DECOY not in (traces / "serve.strace").read_text()
