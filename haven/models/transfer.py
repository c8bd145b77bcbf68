"""Moving a blob's bytes from a registry into ``blobs/partial-<sha256>``: resumable, bounded, cancellable.

Shared by both kinds of pull (:mod:`haven.models.hub` for Hugging Face, :mod:`haven.models.ollama_registry`
for Ollama-style registries); :mod:`haven.models.pull` puts them together.

* **Resume**: bytes already in the partial file are kept; the next request asks for ``Range: bytes=N-``
  with ``If-Range`` set to the ETag the byte server sent for them (kept in ``partial-<sha256>.etag``),
  appends on ``206`` and starts over on a plain ``200``. Dropped connections are retried with backoff
  within one pull. A partial file is *resumable by design*: an interrupted, cancelled or abandoned pull
  leaves it, and the next pull of the same digest continues it; a partial that turns out wrong (longer than
  the blob, hash mismatch) is deleted.
* **Bounds**: never more bytes than the declared size; a disk-space check before the first byte
  (:func:`check_disk_space`); at most ``HAVEN_MAX_CONCURRENT_PULLS`` pulls at a time in one process
  (:func:`pull_slot`); redirects only to ``https`` (or to the configured endpoint's own origin), never
  to plain http elsewhere (:func:`redirect_guard`).
* **Cancellation**: a :class:`CancelToken` set from another thread (the server, when the client that
  asked for the pull disconnects) shuts down the socket being read, so the worker thread stops within
  moments even when the server sends nothing, and the pull raises :class:`PullCancelledError`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from haven.egress import also_allow
from haven.errors import DownloadError, PullCancelledError, QueueFullError

MAX_REDIRECTS = 5


class PullProgress(Protocol):
    def __call__(self, status: str, completed: int | None = None, total: int | None = None, **extra: Any) -> None: ...


@dataclass(frozen=True)
class Blob:
    """One file to fetch: where, and what it must be."""

    url: str
    sha256: str
    size: int
    label: str
    """How messages name it (a file name, or a digest prefix)."""


class Registry(Protocol):
    """What :func:`download` needs of a registry client."""

    endpoint: str
    client: httpx.Client

    def raise_for_status(self, response: httpx.Response, url: str) -> None: ...


# --- cancellation ---------------------------------------------------------------------------------------


class CancelToken:
    """Set once from any thread; wakes a download blocked on a socket by shutting the socket down."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def check(self) -> None:
        if self._event.is_set():
            raise PullCancelledError("the pull was cancelled; its partial download is kept for the next pull")

    def wait(self, seconds: float) -> None:
        """Sleep (a retry backoff) unless cancelled meanwhile."""
        self._event.wait(seconds)
        self.check()

    @contextlib.contextmanager
    def watching(self, response: httpx.Response) -> Iterator[None]:
        """While ``response``'s body is read, :meth:`cancel` shuts its socket down."""
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            yield
            return
        with self._lock:
            if self._event.is_set():
                raise PullCancelledError("the pull was cancelled")
            self._sockets.add(sock)
        try:
            yield
        finally:
            with self._lock:
                self._sockets.discard(sock)


NEVER_CANCELLED = CancelToken()


# --- limits ---------------------------------------------------------------------------------------------

_slots_lock = threading.Lock()
_slots_used = 0


@contextlib.contextmanager
def pull_slot(limit: int) -> Iterator[None]:
    """One of at most ``limit`` concurrent pulls in this process (429 when all are taken)."""
    global _slots_used
    with _slots_lock:
        if _slots_used >= limit:
            raise QueueFullError(
                f"{_slots_used} pulls are already running (HAVEN_MAX_CONCURRENT_PULLS={limit}); "
                "try again when one finishes",
                retry_after=5.0,
            )
        _slots_used += 1
    try:
        yield
    finally:
        with _slots_lock:
            _slots_used -= 1


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    raise AssertionError("unreachable")


def check_disk_space(directory: Path, needed: int, reserve: int, label: str) -> None:
    """Refuse to start when ``needed`` more bytes would leave less than ``reserve`` free in ``directory``."""
    free = shutil.disk_usage(directory).free
    if needed > free - reserve:
        raise DownloadError(
            f"not enough disk space for {label}: it needs {_human(needed)} more, {_human(free)} are free "
            f"in {directory} and Haven keeps {_human(reserve)} free (HAVEN_PULL_MIN_FREE_BYTES)"
        )


def redirect_guard(endpoint: str) -> Callable[[httpx.Response], None]:
    """An httpx response hook refusing redirects to anything but https or the endpoint's own origin.

    A registry redirects blob downloads to a CDN (Hugging Face to its own, Ollama's to Cloudflare R2):
    that is followed over https. A downgrade to plain http, or to another scheme, would let anyone on the
    path swap the bytes before the hash check and see what is pulled, so it is refused. A loopback or
    in-house registry configured with http may redirect within itself.
    """
    origin = httpx.URL(endpoint)

    def check(response: httpx.Response) -> None:
        if not response.is_redirect or "location" not in response.headers:
            return
        target = response.url.join(response.headers["location"])
        same_origin = (target.scheme, target.host, target.port) == (origin.scheme, origin.host, origin.port)
        if target.scheme != "https" and not same_origin:
            response.close()
            raise DownloadError(
                f"refusing a redirect from {response.url.host} to {target.scheme}://{target.host}: "
                "only https redirects are followed"
            )
        # The egress guard opens the redirect's host for the rest of this pull only (issue 17).
        also_allow([f"{target.host}:{target.port or 443}"])

    return check


# --- the download ---------------------------------------------------------------------------------------


def etag_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".etag")


def discard(partial: Path) -> None:
    partial.unlink(missing_ok=True)
    etag_path(partial).unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """One pull per blob at a time (a second concurrent pull of the same blob fails fast)."""
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DownloadError(f"another pull of {path.name.removeprefix('partial-')[:12]} is in progress") from None
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
            Path(lock.name).unlink(missing_ok=True)


def _download_once(
    registry: Registry, blob: Blob, partial: Path, progress: PullProgress, status: str, cancel: CancelToken
) -> None:
    """One GET that continues ``partial``; raises httpx transport errors on a dropped connection."""
    have = partial.stat().st_size if partial.exists() else 0
    if have > blob.size:  # a stale partial longer than the file: cannot be a prefix of it
        discard(partial)
        have = 0
    if have == blob.size:
        return
    headers: dict[str, str] = {}
    etag_file = etag_path(partial)
    if have:
        headers["Range"] = f"bytes={have}-"
        if etag_file.exists():
            headers["If-Range"] = etag_file.read_text(encoding="ascii").strip()
    with registry.client.stream("GET", blob.url, headers=headers) as response, cancel.watching(response):
        if response.status_code == 416:  # our range starts past the end: the partial is unusable
            discard(partial)
            raise httpx.RemoteProtocolError("range not satisfiable; restarting", request=response.request)
        registry.raise_for_status(response, blob.url)
        if response.status_code == 206:
            content_range = response.headers.get("content-range", "")
            if not content_range.startswith(f"bytes {have}-"):
                raise DownloadError(f"the server resumed {blob.label} at the wrong offset ({content_range!r})")
            mode = "ab"
        else:  # 200: the whole file (range ignored or the file changed); start over
            have, mode = 0, "wb"
            etag = response.headers.get("etag", "")
            if etag and not etag.startswith("W/") and etag.isascii():  # If-Range needs a strong validator
                etag_file.write_text(etag, encoding="ascii")
            else:
                etag_file.unlink(missing_ok=True)
        # Unbuffered: the bytes reported as received are the bytes on disk (what a resume continues from).
        with open(partial, mode, buffering=0) as out:
            for chunk in response.iter_bytes():  # no chunk_size: a dropped connection loses no buffered bytes
                if have + len(chunk) > blob.size:
                    raise DownloadError(f"the server sent more than the {blob.size:,} bytes of {blob.label}")
                view = memoryview(chunk)
                while view:
                    view = view[out.write(view) or 0 :]
                have += len(chunk)
                progress(status, have, blob.size)
            os.fsync(out.fileno())
    if have < blob.size:
        raise httpx.RemoteProtocolError(f"connection closed after {have} of {blob.size} bytes", request=None)


def download(
    registry: Registry,
    blob: Blob,
    partial: Path,
    progress: PullProgress,
    *,
    offline_error: Callable[[str, Exception], Exception],
    cancel: CancelToken = NEVER_CANCELLED,
    retries: int = 3,
    backoff: float = 1.0,
) -> None:
    """Complete ``partial`` (resuming what is there), retrying dropped connections ``retries`` times."""
    status = f"pulling sha256:{blob.sha256[:12]}"
    attempt = 0
    while True:
        cancel.check()
        try:
            _download_once(registry, blob, partial, progress, status, cancel)
            return
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            cancel.check()
            raise offline_error(registry.endpoint, exc) from None
        except (httpx.TransportError, httpx.StreamError, OSError) as exc:
            cancel.check()  # a socket shut down by cancel() surfaces as a read error: report the cancel
            if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
                raise DownloadError(f"cannot write the download of {blob.label}: {exc}") from None
            attempt += 1
            if attempt > retries:
                have = partial.stat().st_size if partial.exists() else 0
                raise DownloadError(
                    f"the download of {blob.label} was interrupted at {have:,} of {blob.size:,} bytes "
                    f"({exc or type(exc).__name__}); run the same command again to resume"
                ) from None
            cancel.wait(backoff * 2 ** (attempt - 1))
