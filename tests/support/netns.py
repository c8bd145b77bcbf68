"""Run a command in a fresh network namespace that has only loopback (``unshare -n``, root only).

Inside, no packet can leave the machine whatever the code does: tests that exercise egress refusal use it so
that a guard that fails cannot reach a real address either.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

import pytest


def netns_available() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True)
    return probe.returncode == 0


requires_netns = pytest.mark.skipif(not netns_available(), reason="needs root, unshare and ip (a network namespace)")


def in_netns(command: Sequence[str], addresses: Sequence[str] = ()) -> list[str]:
    """``command`` run inside a new network namespace with loopback up.

    ``addresses`` (e.g. ``198.51.100.7``) are added to its loopback interface: non-loopback addresses that only
    exist inside the namespace, standing in for other machines (an upstream, a host Haven must not reach)."""
    setup = "".join(f" && ip addr add {address}/32 dev lo" for address in addresses)
    return ["unshare", "-n", "sh", "-c", f'ip link set lo up{setup} && exec "$@"', "netns", *command]
