"""The zero-egress guard: every outbound connection of the Haven process is checked before it is made.

``HAVEN_EGRESS=deny`` (the default) lets the process reach loopback only, plus the configured model hub for
exactly as long as a pull the user asked for runs; ``allowlist`` adds the destinations named in
``HAVEN_EGRESS_ALLOW`` (remote upstreams, an external audit target). Anything else is refused before a packet
is sent, and reported (the server writes refusals to the security log).

This is a tripwire inside the process, built on Python's audit hooks (``socket.connect``,
``socket.getaddrinfo``, ``socket.sendto``): it sees every connection made through Python's socket module,
which is every connection Haven itself makes (httpx, asyncio's default loop). It does not see C code that opens
sockets on its own, nor uvloop, so Haven always runs the standard asyncio loop; for a guarantee, operators add
the OS-level fence described in docs/sovereignty.md (systemd ``IPAddressDeny=any``, or a network namespace).
"""

from haven.egress.guard import (
    EgressGuard,
    EgressRefusedError,
    allowing,
    also_allow,
    install_guard,
    installed_guard,
)
from haven.egress.policy import EgressPolicy, parse_destination

__all__ = [
    "EgressGuard", "EgressPolicy", "EgressRefusedError", "allowing", "also_allow", "install_guard", "installed_guard",
    "parse_destination",
]
