"""The egress guard: policy rules in process, and refusals inside a real process in a network namespace.

The guard's audit hook cannot be removed once installed, so everything that installs it runs in a child
process, and that child runs in a namespace with only loopback: a guard that failed could not reach
anything either (and nothing is ever aimed at a real host: 192.0.2.0/24 and *.invalid are reserved)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import textwrap

import pytest

from haven.egress import EgressPolicy, parse_destination
from haven.errors import ConfigurationError
from tests.support.netns import in_netns, requires_netns


def test_loopback_is_always_allowed_and_nothing_else_in_deny_mode() -> None:
    policy = EgressPolicy.from_strings("deny", ["gpu1.example:8000"])
    assert policy.allows_name("localhost") and policy.allows_name("127.0.0.1") and policy.allows_name("::1")
    assert policy.allows_address(ipaddress.ip_address("127.8.9.10"))
    assert policy.allows_address(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not policy.allows_name("gpu1.example", 8000)  # named, but deny mode ignores the allowlist
    assert not policy.allows_address(ipaddress.ip_address("192.0.2.1"), 443)


def test_allowlist_mode_opens_exactly_the_named_destinations() -> None:
    policy = EgressPolicy.from_strings("allowlist", ["gpu1.example:8000", "10.0.0.0/24", "[2001:db8::5]:443"])
    assert policy.allows_name("GPU1.example.", 8000)
    assert not policy.allows_name("gpu1.example", 22)
    assert not policy.allows_name("gpu2.example", 8000)
    assert policy.allows_address(ipaddress.ip_address("10.0.0.77"), 1234)
    assert not policy.allows_address(ipaddress.ip_address("10.0.1.1"), 1234)
    assert policy.allows_address(ipaddress.ip_address("2001:db8::5"), 443)
    assert not policy.allows_address(ipaddress.ip_address("2001:db8::5"), 80)


def test_configured_upstreams_are_reachable_in_every_mode() -> None:
    policy = EgressPolicy.from_strings("deny", [], configured=["10.0.0.5:8000"])
    assert policy.allows_address(ipaddress.ip_address("10.0.0.5"), 8000)
    assert not policy.allows_address(ipaddress.ip_address("10.0.0.5"), 22)


def test_a_pull_opens_its_hub_only_while_it_runs() -> None:
    policy = EgressPolicy.from_strings("deny", [])
    with policy.temporarily_allow(["hub.example"]):
        assert policy.allows_name("hub.example", 443)
    assert not policy.allows_name("hub.example", 443)


@pytest.mark.parametrize("bad", ["", "host:0", "host:99999", "bad host", "a" * 300, "x..y"])
def test_bad_destinations_are_a_clear_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="egress destination"):
        parse_destination(bad)


CHILD = textwrap.dedent(
    """
    import asyncio, json, socket, sys, threading
    import httpx
    from haven.egress import EgressPolicy, install_guard, allowing, also_allow

    refusals = []
    install_guard(EgressPolicy.from_strings(sys.argv[1], sys.argv[2:]), [lambda d, e: refusals.append([d, e])])
    server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(8)
    port = server.getsockname()[1]
    threading.Thread(target=lambda: [server.accept() for _ in range(8)], daemon=True).start()
    results = {}

    def attempt(name, fn):
        try:
            fn(); results[name] = "ok"
        except Exception as exc:  # httpx and asyncio wrap the guard's PermissionError; its message stays
            refused = "refused by HAVEN_EGRESS" in str(exc) or isinstance(exc, PermissionError)
            # "oserror": allowed by the guard, but the namespace has no route
            results[name] = "refused" if refused else "oserror"

    attempt("loopback", lambda: socket.create_connection(("127.0.0.1", port), timeout=2).close())
    attempt("localhost", lambda: socket.create_connection(("localhost", port), timeout=2).close())
    attempt("raw_ip", lambda: socket.create_connection(("192.0.2.1", 80), timeout=2).close())
    attempt("name", lambda: socket.getaddrinfo("exfiltrate.invalid", 443))
    attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("192.0.2.1", 53)))
    attempt("httpx", lambda: httpx.get("http://192.0.2.1:81/", timeout=2))

    async def via_asyncio():
        reader, writer = await asyncio.wait_for(asyncio.open_connection("192.0.2.1", 82), 2)
    attempt("asyncio", lambda: asyncio.run(via_asyncio()))
    attempt("allowlisted", lambda: socket.create_connection(("192.0.2.7", 83), timeout=1).close())
    with allowing(["192.0.2.9"]):
        attempt("during_pull", lambda: socket.create_connection(("192.0.2.9", 84), timeout=1).close())
        also_allow(["192.0.2.10:85"])  # the pull was redirected to its CDN
        attempt("redirected", lambda: socket.create_connection(("192.0.2.10", 85), timeout=1).close())
    attempt("after_pull", lambda: socket.create_connection(("192.0.2.9", 84), timeout=1).close())
    attempt("cdn_after_pull", lambda: socket.create_connection(("192.0.2.10", 85), timeout=1).close())
    print(json.dumps({"results": results, "refusals": refusals}))
    """
)


def run_child(mode: str, *allowed: str) -> dict:
    done = subprocess.run(in_netns([sys.executable, "-c", CHILD, mode, *allowed]), capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@requires_netns
def test_deny_mode_refuses_every_outbound_path_and_reports_it() -> None:
    seen = run_child("deny", "192.0.2.7")
    assert seen["results"] == {
        "loopback": "ok", "localhost": "ok", "raw_ip": "refused", "name": "refused", "udp": "refused",
        "httpx": "refused", "asyncio": "refused", "allowlisted": "refused",
        "during_pull": "oserror",  # the guard let it through; the namespace had no route
        "redirected": "oserror",
        "after_pull": "refused", "cdn_after_pull": "refused",
    }
    destinations = [d for d, _ in seen["refusals"]]
    assert "192.0.2.1:80" in destinations and "exfiltrate.invalid:443" in destinations
    assert len(destinations) == 8


@requires_netns
def test_allowlist_mode_lets_the_named_address_through() -> None:
    seen = run_child("allowlist", "192.0.2.7")
    assert seen["results"]["allowlisted"] == "oserror"  # let through (then no route, in the namespace)
    assert seen["results"]["raw_ip"] == "refused"
