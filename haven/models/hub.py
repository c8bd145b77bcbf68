"""Hugging Face hub client for pulls: parse references, find a file's published sha256 and size, download.

References (see docs/models.md):

* ``hf://OWNER/REPO/FILE.gguf`` or ``hf://OWNER/REPO/FILE.gguf@REVISION`` — one exact file;
* ``hf.co/OWNER/REPO[:QUANT][@REVISION]`` (also ``huggingface.co/…``) — like Ollama's ``hf.co/`` refs: the
  repository's ``.gguf`` file whose name contains QUANT (e.g. ``Q4_K_M``), found through the tree API;
  without QUANT the only GGUF of the repo, else the ``Q4_K_M`` one (Ollama's default), else an error that
  lists the choices.

The hub publishes each LFS file's sha256 twice: as ``X-Linked-Etag`` (or ``ETag``) and ``X-Linked-Size``
on ``HEAD {endpoint}/{repo}/resolve/{rev}/{file}`` (a 302 to the CDN), and as ``lfs.oid`` in
``{endpoint}/api/models/{repo}/tree/{rev}``. A file without a published sha256 is refused: Haven never
stores bytes it cannot verify.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from haven.errors import DownloadError, InvalidRequestError, ModelNotFoundError, OfflineError
from haven.models.names import check_reference
from haven.models.transfer import MAX_REDIRECTS, Blob, redirect_guard

_SHA256 = re.compile(r"[0-9a-f]{64}")
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
DEFAULT_QUANT = "Q4_K_M"
OFFLINE_HINT = "Haven works offline with models you import: haven models import PATH"


@dataclass(frozen=True)
class HubRef:
    repo: str
    """``OWNER/REPO``."""
    filename: str | None
    quant: str | None
    revision: str = "main"


@dataclass(frozen=True)
class RemoteFile:
    repo: str
    filename: str
    revision: str
    sha256: str
    size: int

    @property
    def source(self) -> str:
        suffix = "" if self.revision == "main" else f"@{self.revision}"
        return f"hf://{self.repo}/{self.filename}{suffix}"

    def blob(self, client: HubClient) -> Blob:
        return Blob(client.file_url(self.repo, self.revision, self.filename), self.sha256, self.size, self.filename)


def _bad_ref(ref: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"cannot understand model reference {ref!r}: {why} "
        "(use hf://OWNER/REPO/FILE.gguf[@REVISION] or hf.co/OWNER/REPO[:QUANT])"
    )


def _check_repo(ref: str, owner: str, repo: str) -> str:
    for part in (owner, repo):
        if not _REPO_PART.fullmatch(part) or ".." in part:
            raise _bad_ref(ref, f"{part!r} is not a valid owner or repository name")
    return f"{owner}/{repo}"


def parse_ref(ref: str) -> HubRef:
    """Parse a pull reference (raises InvalidRequestError with the accepted syntaxes)."""
    raw = check_reference(ref)  # bounded first: a 100,000-character reference is one line, not an InvalidURL
    revision = "main"
    if raw.startswith("hf://"):
        body = raw[len("hf://") :]
        if "@" in body:
            body, revision = body.rsplit("@", 1)
        parts = body.split("/")
        if len(parts) < 3 or not parts[-1].lower().endswith(".gguf"):
            raise _bad_ref(ref, "expected hf://OWNER/REPO/FILE.gguf")
        filename = "/".join(parts[2:])
        if any(p in ("", ".", "..") for p in parts[2:]) or "\\" in filename:
            raise _bad_ref(ref, "the file path is not a plain path inside the repository")
        hub_ref = HubRef(_check_repo(ref, parts[0], parts[1]), filename, None, revision)
    else:
        for prefix in ("https://", "http://"):
            raw = raw.removeprefix(prefix)
        for host in ("hf.co/", "huggingface.co/"):
            if raw.startswith(host):
                body = raw[len(host) :]
                break
        else:
            raise _bad_ref(ref, "unknown prefix")
        if "@" in body:
            body, revision = body.rsplit("@", 1)
        body, _, quant = body.partition(":")
        parts = body.split("/")
        if len(parts) != 2:
            raise _bad_ref(ref, "expected hf.co/OWNER/REPO")
        hub_ref = HubRef(_check_repo(ref, parts[0], parts[1]), None, quant or None, revision)
    if not re.fullmatch(r"[A-Za-z0-9._/-]{1,128}", hub_ref.revision) or ".." in hub_ref.revision:
        raise _bad_ref(ref, f"{hub_ref.revision!r} is not a valid revision")
    return hub_ref


def is_hub_ref(ref: str) -> bool:
    """Whether ``ref`` names a Hugging Face file or repository (else it is an Ollama registry name)."""
    raw = ref.strip().lower()
    for prefix in ("https://", "http://"):
        raw = raw.removeprefix(prefix)
    return raw.startswith(("hf://", "hf.co/", "huggingface.co/"))


def offline_error(endpoint: str, exc: Exception) -> OfflineError:
    text = str(exc).lower()
    if "refused" in text:
        why = "connection refused"
    elif "name or service" in text or "nodename" in text or "temporary failure in name resolution" in text:
        why = "the host name does not resolve"
    elif isinstance(exc, httpx.TimeoutException):
        why = "timed out"
    elif "unreachable" in text:
        why = "network unreachable"
    else:
        why = str(exc) or type(exc).__name__
    return OfflineError(f"cannot reach {endpoint}: {why}; {OFFLINE_HINT}")


def _etag_sha(value: str | None) -> str | None:
    if not value:
        return None
    cleaned = value.strip().removeprefix("W/").strip('"').lower()
    return cleaned if _SHA256.fullmatch(cleaned) else None


class HubClient:
    """Thin httpx wrapper speaking the hub's resolve and tree endpoints."""

    def __init__(self, endpoint: str, token: str | None, timeout: float) -> None:
        self.endpoint = endpoint.rstrip("/")
        headers = {"User-Agent": "haven-model-store"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(
            headers=headers,
            timeout=timeout,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            event_hooks={"response": [redirect_guard(self.endpoint)]},  # https-only redirects
        )

    def close(self) -> None:
        self.client.close()

    def file_url(self, repo: str, revision: str, filename: str) -> str:
        return f"{self.endpoint}/{repo}/resolve/{quote(revision, safe='')}/{quote(filename)}"

    def _request(self, method: str, url: str, *, follow: bool = True) -> httpx.Response:
        try:
            response = self.client.request(method, url, follow_redirects=follow)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise offline_error(self.endpoint, exc) from None
        except httpx.HTTPError as exc:
            raise DownloadError(f"request to {url} failed: {exc or type(exc).__name__}") from None
        self.raise_for_status(response, url)
        return response

    @staticmethod
    def raise_for_status(response: httpx.Response, url: str) -> None:
        status = response.status_code
        if status in (401, 403):
            raise DownloadError(
                f"the hub refused {url} (HTTP {status}); gated or private repositories need HAVEN_HF_TOKEN"
            )
        if status == 404:
            raise ModelNotFoundError(f"not found on the hub: {url}")
        if status >= 400:
            raise DownloadError(f"the hub answered HTTP {status} for {url}")

    def tree(self, repo: str, revision: str) -> list[dict[str, object]]:
        url = f"{self.endpoint}/api/models/{repo}/tree/{quote(revision, safe='')}?recursive=true"
        data = self._request("GET", url).json()
        if not isinstance(data, list):
            raise DownloadError(f"unexpected answer from {url}")
        return [entry for entry in data if isinstance(entry, dict)]

    def resolve(self, ref: HubRef) -> RemoteFile:
        """The file a reference names, with its published sha256 and size."""
        filename = ref.filename or self._pick_file(ref)
        url = self.file_url(ref.repo, ref.revision, filename)
        # Not following the redirect: the X-Linked-* headers are on the hub's own 302.
        head = self._request("HEAD", url, follow=False)
        sha = _etag_sha(head.headers.get("x-linked-etag")) or _etag_sha(head.headers.get("etag"))
        size_text = head.headers.get("x-linked-size") or head.headers.get("content-length")
        if sha is None:
            sha, size_text = self._sha_from_tree(ref, filename)
        if sha is None:
            raise DownloadError(f"the hub publishes no sha256 for {ref.repo}/{filename}; refusing an unverifiable file")
        try:
            size = int(size_text or "")
        except ValueError:
            raise DownloadError(f"the hub publishes no size for {ref.repo}/{filename}") from None
        return RemoteFile(ref.repo, filename, ref.revision, sha, size)

    def _sha_from_tree(self, ref: HubRef, filename: str) -> tuple[str | None, str | None]:
        for entry in self.tree(ref.repo, ref.revision):
            lfs = entry.get("lfs")
            if entry.get("path") == filename and isinstance(lfs, dict):
                return _etag_sha(str(lfs.get("oid", ""))), str(lfs.get("size", entry.get("size", "")))
        return None, None

    def _pick_file(self, ref: HubRef) -> str:
        ggufs = [
            str(e["path"])
            for e in self.tree(ref.repo, ref.revision)
            if e.get("type") == "file" and str(e.get("path", "")).lower().endswith(".gguf")
        ]
        # Split models (-00001-of-00003) and projector files (mmproj) are not single loadable models.
        ggufs = [p for p in ggufs if not re.search(r"-\d{5}-of-\d{5}\.gguf$", p) and "mmproj" not in p.lower()]
        if not ggufs:
            raise ModelNotFoundError(f"{ref.repo} has no single-file .gguf model at revision {ref.revision}")
        return choose_file(ref, ggufs)


def choose_file(ref: HubRef, candidates: list[str]) -> str:
    """The candidate whose name contains the quant as a whole word (Q4_K_M ≠ Q4_K_M_L); see module docs."""

    def matching(quant: str) -> list[str]:
        pattern = re.compile(rf"(^|[-_./]){re.escape(quant)}($|[-_.])", re.IGNORECASE)
        return [c for c in candidates if pattern.search(c.rsplit("/", 1)[-1][: -len(".gguf")] + ".")]

    if ref.quant:
        found = matching(ref.quant)
        if len(found) == 1:
            return found[0]
        what = "no file" if not found else "several files"
        raise ModelNotFoundError(
            f"{what} in {ref.repo} match {ref.quant!r}; available: {', '.join(sorted(candidates))}"
        )
    if len(candidates) == 1:
        return candidates[0]
    default = matching(DEFAULT_QUANT)
    if len(default) == 1:
        return default[0]
    raise InvalidRequestError(
        f"{ref.repo} has several GGUF files; name one with hf.co/{ref.repo}:QUANT "
        f"(available: {', '.join(sorted(candidates))})"
    )
