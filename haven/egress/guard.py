"""The audit hook that enforces an :class:`~haven.egress.policy.EgressPolicy` on this process.

Python's audit hooks are process-wide and cannot be removed, so there is one guard per process: the first
:func:`install_guard` adds the hook, later calls swap its policy. The hook refuses by raising
:class:`EgressRefusedError` (a ``PermissionError``, which every HTTP library reports as a failed
connection) *before* the socket call runs, so nothing is sent: not the connection, and not a DNS query that
would itself carry the name to a resolver.

``socket.connect`` to an address is checked against the policy directly. A library that resolves a name
first (httpx, asyncio) calls ``socket.getaddrinfo``: an allowed name's answers are remembered, so connecting
to them is allowed too; refusing the lookup of any other name keeps the name itself from leaving.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from haven.egress.policy import EgressPolicy

log = logging.getLogger("haven.egress")

Reporter = Callable[[str, str], None]
"""Called with (destination, event) for every refusal; the server writes them to the security log."""


class EgressRefusedError(PermissionError):
    """An outbound connection the egress policy does not allow."""


@dataclass
class EgressGuard:
    policy: EgressPolicy
    reporters: list[Reporter]
    refused: int = 0

    def __post_init__(self) -> None:
        self._resolved: OrderedDict[str, str] = OrderedDict()  # address → an allowed name it was resolved for
        self._lock = threading.Lock()
        self._local = threading.local()

    # --- the hook ------------------------------------------------------------------------------
    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if not event.startswith("socket.") or getattr(self._local, "busy", False):
            return
        if event == "socket.getaddrinfo":
            self._check_lookup(args[0], args[1])
        elif event in ("socket.connect", "socket.sendto", "socket.sendmsg") and len(args) >= 2:
            self._check_connect(args[0], args[1], event)

    def _check_lookup(self, host: Any, port: Any) -> None:
        if host is None:  # getaddrinfo(None, port): a local wildcard, used to bind
            return
        name = host.decode("idna", "replace") if isinstance(host, bytes) else str(host)
        if not self.policy.allows_name(name, _port(port)):
            self._refuse(f"{name}:{port}" if port else name, "lookup")

    def _check_connect(self, sock: Any, address: Any, event: str) -> None:
        family = getattr(sock, "family", None)
        if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple) or not address:
            return  # Unix sockets, netlink…: local by nature
        host, port = str(address[0]), _port(address[1] if len(address) > 1 else None)
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:  # a name handed straight to connect(): the C code resolves it, so check the name
            if not self.policy.allows_name(host, port):
                self._refuse(f"{host}:{port}", event.removeprefix("socket."))
            return
        with self._lock:
            name = self._resolved.get(str(ip))
        if self.policy.allows_address(ip, port) or (name is not None and self.policy.allows_resolved(name, ip, port)):
            return
        self._refuse(f"{host}:{port}", event.removeprefix("socket."))

    def _refuse(self, destination: str, event: str) -> None:
        self.refused += 1
        self._local.busy = True  # a reporter that logs or writes to a database must not trip the hook again
        try:
            log.warning("egress refused: %s (%s)", destination, event)
            for report in list(self.reporters):
                try:
                    report(destination, event)
                except Exception:  # a broken reporter must not turn a refusal into a crash
                    log.exception("egress reporter failed")
        finally:
            self._local.busy = False
        raise EgressRefusedError(f"outbound connection to {destination} refused by HAVEN_EGRESS "
                                 f"(mode {self.policy.mode}; see `haven doctor`)")

    # --- remembering what allowed names resolved to ------------------------------------------------
    def remember(self, name: str, results: list[Any]) -> None:
        if name.lower().rstrip(".") in {"localhost"}:
            return
        with self._lock:
            for result in results:
                sockaddr = result[4]
                if sockaddr:
                    self._resolved[str(sockaddr[0]).split("%")[0]] = name.lower().rstrip(".")
            while len(self._resolved) > 4096:
                self._resolved.popitem(last=False)


def _port(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


_guard: EgressGuard | None = None
_install_lock = threading.Lock()


def install_guard(policy: EgressPolicy, reporters: list[Reporter] | None = None) -> EgressGuard:
    """Enforce ``policy`` on this process from now on (idempotent: a second call swaps the policy)."""
    global _guard
    with _install_lock:
        if _guard is not None:
            _guard.policy = policy
            _guard.reporters[:] = reporters or []
            return _guard
        guard = EgressGuard(policy, list(reporters or []))
        original = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
            results = original(host, port, *args, **kwargs)  # the audit hook has already checked the name
            if host is not None:
                guard.remember(host.decode("idna", "replace") if isinstance(host, bytes) else str(host), results)
            return results

        socket.getaddrinfo = getaddrinfo
        sys.addaudithook(guard.audit)
        _guard = guard
        return guard


def installed_guard() -> EgressGuard | None:
    return _guard


_task = threading.local()


@contextmanager
def allowing(destinations: Iterable[str]) -> Iterator[None]:
    """Open ``destinations`` (host names or ``host:port``) for one task, such as a pull the user asked for,
    on this thread's behalf; :func:`also_allow` adds to it while it runs. A no-op where no guard is installed
    (the CLI's own commands, tests)."""
    guard = _guard
    if guard is None:
        yield
        return
    with guard.policy.temporarily_allow(destinations) as extend:
        previous = getattr(_task, "extend", None)
        _task.extend = extend
        try:
            yield
        finally:
            _task.extend = previous


def also_allow(destinations: Iterable[str]) -> None:
    """Within :func:`allowing` on this thread (a pull following a redirect to its CDN): open these too, until
    that task ends. Outside one, nothing is opened."""
    extend = getattr(_task, "extend", None)
    if extend is not None:
        extend(destinations)
