"""uvicorn's HTTP protocol with a request-header deadline (slowloris protection).

uvicorn closes idle keep-alive connections (``timeout_keep_alive``), but once a client has sent one
byte of a request it waits for the rest of the headers for ever: a few hundred connections trickling a
byte every few seconds hold every connection slot. :func:`header_timeout_protocol` returns a subclass of
uvicorn's protocol class that closes a connection whose request headers have not all arrived within
``seconds`` of it opening (or of its previous response completing). Bodies are bounded separately by
:class:`~haven.server.ratelimit.RateLimitMiddleware`'s body timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any


def header_timeout_protocol(base: type[Any], seconds: float) -> type[Any]:
    """A subclass of uvicorn's ``H11Protocol`` or ``HttpToolsProtocol`` enforcing the header deadline."""

    class HeaderDeadlineProtocol(base):
        _header_timer: asyncio.TimerHandle | None = None
        _armed_cycle: object = None

        def _arm(self) -> None:
            self._disarm()
            self._armed_cycle = self.cycle  # a new cycle object appears when the next headers are complete
            self._header_timer = self.loop.call_later(seconds, self._headers_overdue)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_overdue(self) -> None:
            self._header_timer = None
            if self.cycle is self._armed_cycle and not self.transport.is_closing():
                self.transport.close()  # no request started within the deadline

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    HeaderDeadlineProtocol.__name__ = f"HeaderDeadline{base.__name__}"
    return HeaderDeadlineProtocol


def uvicorn_protocol(seconds: float) -> type[Any] | str:
    """The protocol class ``uvicorn.run(http=...)`` should use (``"auto"`` when the deadline is off)."""
    if seconds <= 0:
        return "auto"
    base: type[Any]
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base = HttpToolsProtocol
    except ImportError:  # httptools is optional
        from uvicorn.protocols.http.h11_impl import H11Protocol

        base = H11Protocol
    return header_timeout_protocol(base, seconds)
