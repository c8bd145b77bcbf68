"""Which destinations the process may reach: loopback always, then what the operator named.

A destination is a host name, an IP address or a CIDR network, optionally with a port (``gpu1.lan:8000``,
``10.0.0.0/24``, ``[2001:db8::5]:443``). Names are matched as names when a library resolves them
(``getaddrinfo``) and again as addresses when it connects, so a name allowed for one upstream does not open
the door to whatever else shares its address space.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from haven.errors import ConfigurationError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


@dataclass(frozen=True)
class Destination:
    host: str | None
    """A lower-case host name, or None when ``network`` is given."""
    network: IPNetwork | None
    port: int | None

    def matches_name(self, name: str, port: int | None) -> bool:
        return self.host == name.lower().rstrip(".") and self._port_ok(port)

    def matches_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int | None) -> bool:
        return self.network is not None and address in self.network and self._port_ok(port)

    def _port_ok(self, port: int | None) -> bool:
        return self.port is None or port is None or self.port == port

    def __str__(self) -> str:
        where = self.host or str(self.network)
        return f"{where}:{self.port}" if self.port else where


def parse_destination(text: str) -> Destination:
    """``host[:port]``, ``address[:port]``, ``[v6]:port`` or ``network/prefix``; a clear error otherwise."""
    value = text.strip()
    if not value:
        raise ConfigurationError("an egress destination is empty")
    port: int | None = None
    if value.startswith("["):  # [v6]:port
        inner, _, rest = value[1:].partition("]")
        value = inner
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif value.count(":") == 1:  # host:port or v4:port (a bare v6 address has several colons)
        value, raw_port = value.split(":")
        port = _port(raw_port, text)
    try:
        return Destination(None, ipaddress.ip_network(value, strict=False), port)
    except ValueError:
        pass
    name = value.lower().rstrip(".")
    if not name or len(name) > 253 or not all(part and len(part) <= 63 and part.replace("-", "").isalnum()
                                               for part in name.split(".")):
        raise ConfigurationError(f"egress destination {text!r} is neither a host name, an address nor a network")
    return Destination(name, None, port)


def _port(raw: str, text: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigurationError(f"egress destination {text!r} has an invalid port")
    return int(raw)


def is_loopback_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def url_leaves_machine(url: str) -> bool:
    """Whether a request to ``url`` leaves this machine: its host is neither a loopback name nor address.

    A name that only resolves to loopback (an /etc/hosts alias) counts as leaving: the check does not resolve,
    so it errs on the side of masking."""
    host = (urlsplit(url if "//" in url else f"//{url}").hostname or "").lower().rstrip(".")
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return False
    try:
        return not is_loopback_address(ipaddress.ip_address(host.split("%")[0]))
    except ValueError:
        return True


@dataclass
class EgressPolicy:
    mode: Literal["deny", "allowlist"] = "deny"
    allowed: tuple[Destination, ...] = ()
    """Used in ``allowlist`` mode only."""
    configured: tuple[Destination, ...] = ()
    """What Haven itself is configured to reach (its remote upstreams): allowed in every mode."""
    _temporary: list[Destination] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_strings(cls, mode: Literal["deny", "allowlist"], destinations: Iterable[str],
                     configured: Iterable[str] = ()) -> EgressPolicy:
        return cls(mode=mode, allowed=tuple(parse_destination(d) for d in destinations),
                   configured=tuple(parse_destination(d) for d in configured))

    @contextmanager
    def temporarily_allow(self, destinations: Iterable[str]) -> Iterator[Callable[[Iterable[str]], None]]:
        """Open the named destinations for the duration of one task (a pull the user asked for), in any mode.

        Yields a function that opens more for the same task (the CDN a registry redirects a download to)."""
        added: list[Destination] = []

        def extend(more: Iterable[str]) -> None:
            parsed = [parse_destination(d) for d in more]
            with self._lock:
                self._temporary.extend(parsed)
                added.extend(parsed)

        extend(destinations)
        try:
            yield extend
        finally:
            with self._lock:
                for destination in added:
                    self._temporary.remove(destination)

    def _open(self) -> list[Destination]:
        with self._lock:
            temporary = list(self._temporary)
        always = [*self.configured, *temporary]
        return [*self.allowed, *always] if self.mode == "allowlist" else always

    def allows_name(self, name: str, port: int | None = None) -> bool:
        """May the process resolve (and so contact) ``name``?"""
        cleaned = name.lower().rstrip(".")
        if cleaned in LOOPBACK_NAMES:
            return True
        try:
            return self.allows_address(ipaddress.ip_address(cleaned.strip("[]").split("%")[0]), port)
        except ValueError:
            pass
        return any(d.matches_name(cleaned, port) for d in self._open())

    def allows_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int | None = None) -> bool:
        if is_loopback_address(address):
            return True
        return any(d.matches_address(address, port) or (d.host is not None and d.matches_name(str(address), port))
                   for d in self._open())

    def allows_resolved(self, name: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                        port: int | None) -> bool:
        """A connection to an address that an allowed name resolved to (recorded by the guard)."""
        return self.allows_address(address, port) or any(d.matches_name(name, port) for d in self._open())
