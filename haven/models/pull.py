"""``haven models pull``: resumable, hash-checked downloads from the Hugging Face hub into the store.

A pull resolves the reference to one file and its published sha256 (:mod:`haven.models.hub`), then
downloads into ``blobs/partial-<sha256>``. Bytes already there are kept: the next request asks for
``Range: bytes=N-`` with ``If-Range`` set to the ETag the byte server sent for the partial bytes (kept
next to them in ``partial-<sha256>.etag``; the CDN's ETag need not be the sha256), appends on
``206 Partial Content`` and starts
over on a plain ``200`` (the server ignored the range, or the file changed). Dropped connections are
retried with backoff within one pull; anything else leaves the partial file in place so running the same
command again resumes it. The finished file is hashed; a mismatch deletes it (HashMismatchError).
Only then is it validated, scanned and moved into the store like an import.

Progress is reported Ollama-style: ``progress(status, completed, total)``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx

from haven.errors import DownloadError, HashMismatchError, InvalidModelFileError
from haven.models.hashing import sha256_file
from haven.models.hub import HubClient, RemoteFile, offline_error, parse_ref
from haven.models.manifest import Manifest
from haven.models.names import DEFAULT_TAG, name_from_filename, parse_name
from haven.models.store import ModelStore
from haven.settings import Settings


class PullProgress(Protocol):
    def __call__(self, status: str, completed: int | None = None, total: int | None = None, **extra: Any) -> None: ...


def _ignore(status: str, completed: int | None = None, total: int | None = None, **extra: Any) -> None:
    return None


def default_name(remote: RemoteFile, quant: str | None) -> str:
    """``hf.co/owner/Repo-GGUF:Q4_K_M`` → ``repo-gguf:q4_k_m``; an exact file → its file name, tag latest."""
    if quant:
        return f"{name_from_filename(remote.repo.split('/', 1)[1])}:{name_from_filename(quant)}"
    return f"{name_from_filename(remote.filename)}:{DEFAULT_TAG}"


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One pull per file at a time (a second concurrent pull of the same blob fails fast)."""
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


def _etag_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".etag")


def _discard(partial: Path) -> None:
    partial.unlink(missing_ok=True)
    _etag_path(partial).unlink(missing_ok=True)


def _download_once(client: HubClient, remote: RemoteFile, partial: Path, progress: PullProgress, status: str) -> None:
    """One GET that continues ``partial``; raises httpx transport errors on a dropped connection."""
    have = partial.stat().st_size if partial.exists() else 0
    if have > remote.size:  # a stale partial longer than the file: cannot be a prefix of it
        _discard(partial)
        have = 0
    if have == remote.size:
        return
    url = client.file_url(remote.repo, remote.revision, remote.filename)
    headers: dict[str, str] = {}
    etag_file = _etag_path(partial)
    if have:
        headers["Range"] = f"bytes={have}-"
        if etag_file.exists():
            headers["If-Range"] = etag_file.read_text(encoding="ascii").strip()
    with client.client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416:  # our range starts past the end: the partial is unusable
            _discard(partial)
            raise httpx.RemoteProtocolError("range not satisfiable; restarting", request=response.request)
        client.raise_for_status(response, url)
        if response.status_code == 206:
            content_range = response.headers.get("content-range", "")
            if not content_range.startswith(f"bytes {have}-"):
                raise DownloadError(f"the server resumed {remote.filename} at the wrong offset ({content_range!r})")
            mode = "ab"
        else:  # 200: the whole file (range ignored or the file changed); start over
            have, mode = 0, "wb"
            etag = response.headers.get("etag", "")
            if etag and not etag.startswith("W/") and etag.isascii():  # If-Range needs a strong validator
                etag_file.write_text(etag, encoding="ascii")
            else:
                etag_file.unlink(missing_ok=True)
        with open(partial, mode) as out:
            for chunk in response.iter_bytes():  # no chunk_size: a dropped connection loses no buffered bytes
                if have + len(chunk) > remote.size:
                    raise DownloadError(f"the server sent more than the {remote.size:,} bytes of {remote.filename}")
                out.write(chunk)
                have += len(chunk)
                progress(status, have, remote.size)
            out.flush()
            os.fsync(out.fileno())
    if have < remote.size:
        raise httpx.RemoteProtocolError(f"connection closed after {have} of {remote.size} bytes", request=None)


def download(
    client: HubClient,
    remote: RemoteFile,
    partial: Path,
    progress: PullProgress,
    *,
    retries: int = 3,
    backoff: float = 1.0,
) -> None:
    """Complete ``partial`` (resuming what is there), retrying dropped connections ``retries`` times."""
    status = f"pulling sha256:{remote.sha256[:12]}"
    attempt = 0
    while True:
        try:
            _download_once(client, remote, partial, progress, status)
            return
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise offline_error(client.endpoint, exc) from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            attempt += 1
            if attempt > retries:
                have = partial.stat().st_size if partial.exists() else 0
                raise DownloadError(
                    f"the download of {remote.filename} was interrupted at {have:,} of {remote.size:,} bytes "
                    f"({exc}); run the same command again to resume"
                ) from None
            time.sleep(backoff * 2 ** (attempt - 1))


def pull(
    store: ModelStore,
    ref: str,
    settings: Settings,
    progress: PullProgress | Callable[..., None] | None = None,
    *,
    name: str | None = None,
    allow_unsafe_template: bool | None = None,
    retries: int = 3,
    backoff: float = 1.0,
) -> Manifest:
    """Download ``ref`` into ``store`` and return its manifest (see the module docs)."""
    report: PullProgress = progress or _ignore
    hub_ref = parse_ref(ref)
    if name is not None:
        parse_name(name)  # a bad name fails before any network traffic
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    allow = settings.allow_unsafe_templates if allow_unsafe_template is None else allow_unsafe_template
    client = HubClient(settings.hf_endpoint, token, settings.download_timeout_seconds)
    try:
        report("pulling manifest")
        remote = client.resolve(hub_ref)
        target = name or default_name(remote, hub_ref.quant)
        parse_name(target)
        store.blobs_dir.mkdir(parents=True, exist_ok=True)
        partial = store.partial_path(remote.sha256)
        with _exclusive(partial):
            download(client, remote, partial, report, retries=retries, backoff=backoff)
            report("verifying sha256 digest")
            actual = sha256_file(partial)
            if actual != remote.sha256:
                _discard(partial)
                raise HashMismatchError(
                    f"the downloaded {remote.filename} has sha256 {actual[:12]}…, but the hub publishes "
                    f"{remote.sha256[:12]}…; the download was discarded"
                )
            report("writing manifest")
            try:
                manifest = store.adopt_download(
                    partial, target, remote.sha256, remote.source, allow_unsafe_template=allow
                )
            except InvalidModelFileError:
                _discard(partial)  # verified bytes, but not a model Haven accepts: nothing to resume
                raise
            # UnsafeTemplateError keeps the verified partial: `pull --allow-unsafe-template` then needs no download.
            _discard(partial)  # already moved when the blob was new; a duplicate otherwise
        report("success")
        return manifest
    finally:
        client.close()
