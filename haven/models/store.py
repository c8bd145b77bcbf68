"""The model store: content-addressed GGUF blobs plus one small JSON manifest per ``name:tag``.

Layout under ``settings.models_dir`` (``HAVEN_HOME/models``)::

    blobs/sha256-<hex>             the GGUF file, named by its content hash (deduplicated)
    blobs/partial-<hex>            an interrupted pull (see :mod:`haven.models.pull`), resumed next time
    manifests/<name>/<tag>.json    what Haven knows about the model (see :class:`Manifest`)
    .lock                          fcntl lock taken around every mutation

Invariants: a blob appears only complete (written to a temp file in ``blobs/``, fsynced, renamed);
a manifest appears only after its blob, atomically (temp + rename); a failed import leaves the store
exactly as it was; a blob is removed only when no manifest references it. Files are validated
(:mod:`haven.models.gguf_info`), their chat template scanned (:mod:`haven.engine.chat_template`) and
the file trial-loaded in a child process (:mod:`haven.models.trial_load`) before anything is written.
Names are never resolved loosely: an unknown name is ModelNotFoundError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from haven.engine.chat_template import scan_template
from haven.errors import (
    DigestMismatchError,
    InvalidModelFileError,
    ModelNotFoundError,
    StoreError,
    UnsafeTemplateError,
)
from haven.models.gguf_info import GGUFInfo, read_gguf_info
from haven.models.hashing import fsync_dir, hash_stream, sha256_file
from haven.models.manifest import Manifest, ModelDefaults
from haven.models.names import ModelName, name_from_filename, parse_name
from haven.models.trial_load import DEFAULT_TIMEOUT as DEFAULT_TRIAL_TIMEOUT
from haven.models.trial_load import trial_load
from haven.settings import Settings

Progress = Callable[[int, int], None]
__all__ = ["Manifest", "ModelStore"]


class ModelStore:
    """A directory of models; safe to use from several processes at once."""

    def __init__(self, root: Path, *, trial_load_timeout: float | None = DEFAULT_TRIAL_TIMEOUT) -> None:
        """``trial_load_timeout``: seconds for the child-process trial load of each new file (None or 0: none)."""
        self.root = Path(root)
        self.trial_load_timeout = trial_load_timeout
        self.blobs_dir = self.root / "blobs"
        self.manifests_dir = self.root / "manifests"
        # Manifests read, by path, with the (inode, size, mtime) they had: every chat request looks its model
        # up, and a stat is a tenth of reading and parsing the file. A manifest is replaced by rename (a new
        # inode) or edited by hand (a new mtime or size), so a changed file is always read again.
        self._read: dict[Path, tuple[tuple[int, int, int], Manifest]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelStore:
        return cls(settings.models_dir, trial_load_timeout=settings.trial_load_timeout_seconds)

    # --- locking and paths ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive lock across processes (flock on ``.lock``): imports/removals never interleave."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _manifest_path(self, name: ModelName) -> Path:
        return self.manifests_dir / name.name / f"{name.tag}.json"

    def blob_path(self, manifest: Manifest) -> Path:
        return self.blobs_dir / f"sha256-{manifest.sha256}"

    def partial_path(self, sha256: str) -> Path:
        return self.blobs_dir / f"partial-{sha256}"

    # --- reading ----------------------------------------------------------------------------------

    def list(self) -> list[Manifest]:
        manifests: list[Manifest] = []
        for path in sorted(self.manifests_dir.glob("*/*.json")):
            try:
                manifests.append(Manifest.from_json(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError, KeyError):
                continue  # a manifest damaged by hand is skipped, not fatal to `haven models list`
        return sorted(manifests, key=lambda m: m.name)

    def get(self, name: str) -> Manifest:
        parsed = parse_name(name)
        path = self._manifest_path(parsed)
        try:
            st = path.stat()
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            cached = self._read.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            manifest = Manifest.from_json(path.read_text(encoding="utf-8"))
            self._read[path] = (stamp, manifest)
            return manifest
        except FileNotFoundError:
            raise ModelNotFoundError(
                f"model {parsed} is not in the store (see `haven models list`; add it with "
                f"`haven models import PATH --name {parsed}` or `haven models pull`)"
            ) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreError(
                f"the manifest of {parsed} is damaged ({exc}); remove it with `haven models rm {parsed}`"
            ) from None

    def exists(self, name: str) -> bool:
        return self._manifest_path(parse_name(name)).is_file()

    def verify(self, name: str) -> bool:
        """Re-hash the model's blob; False when it is missing or its bytes changed."""
        manifest = self.get(name)
        blob = self.blob_path(manifest)
        if not blob.is_file():
            return False
        return sha256_file(blob) == manifest.sha256

    # --- importing --------------------------------------------------------------------------------

    def _inspect(self, path: Path, allow_unsafe_template: bool) -> tuple[GGUFInfo, bool, str | None]:
        info = read_gguf_info(path)
        scan = scan_template(info.chat_template, info.bos_token, info.eos_token)
        if not scan.safe and not allow_unsafe_template:
            raise UnsafeTemplateError(
                f"the chat template of {path.name} failed the safety scan ({scan.reason}); "
                "import it anyway with --allow-unsafe-template (it will still only be rendered in the sandbox)"
            )
        if self.trial_load_timeout:  # before anything is written: a refused file leaves the store as it was
            failure = trial_load(path, timeout=self.trial_load_timeout)
            if failure is not None:
                raise InvalidModelFileError(f"{path.name} is not a model llama.cpp can run: {failure}")
        return info, scan.safe, scan.reason

    def _default_name(self, info: GGUFInfo, path: Path) -> ModelName:
        return parse_name(name_from_filename(path.name))

    def import_file(
        self,
        path: Path,
        name: str | None = None,
        *,
        allow_unsafe_template: bool = False,
        link: bool = False,
        progress: Progress | None = None,
        source: str | None = None,
    ) -> Manifest:
        """Validate, hash and store ``path`` under ``name`` (default: derived from the file name).

        ``source`` is what the manifest records as the model's origin (default: the file's absolute path).
        """
        path = Path(path).expanduser()
        parsed = parse_name(name) if name is not None else None  # bad names fail before any IO
        if not path.exists():
            raise InvalidModelFileError(f"{path}: no such file")
        info, safe, warning = self._inspect(path, allow_unsafe_template)
        target = parsed or self._default_name(info, path)
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        temp, sha = self._stage(path, link=link, progress=progress)
        try:
            if sha is None:  # hard-linked: same inode, hash it in place
                sha = sha256_file(temp, progress)
            return self._commit(temp, sha, info, target, safe, warning, source or str(path.resolve()))
        finally:
            temp.unlink(missing_ok=True)

    def _stage(self, path: Path, *, link: bool, progress: Progress | None) -> tuple[Path, str | None]:
        """Put the file's bytes in a temp file inside ``blobs/``: a hard link (sha None) or a hashed, fsynced copy."""
        if link:
            temp = self.blobs_dir / f".import-{os.getpid()}-{os.urandom(6).hex()}"
            try:
                os.link(path, temp)
                return temp, None
            except OSError:
                pass  # other filesystem (EXDEV) or no link permission: fall back to copying
        fd, name = tempfile.mkstemp(prefix=".import-", dir=self.blobs_dir)
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as dst, open(path, "rb") as src:
                sha = hash_stream(src, os.fstat(src.fileno()).st_size, progress, dst)
                dst.flush()
                os.fsync(dst.fileno())
            os.chmod(temp, 0o644)  # mkstemp makes 0600; blobs are ordinary readable files
            return temp, sha
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _commit(
        self,
        staged: Path,
        sha: str,
        info: GGUFInfo,
        name: ModelName,
        safe: bool,
        warning: str | None,
        source: str,
        defaults: ModelDefaults | None = None,
    ) -> Manifest:
        """Under the lock: move the staged bytes to their blob (unless already there) and write the manifest."""
        size = staged.stat().st_size
        if size != info.size:
            raise InvalidModelFileError(f"{source} changed while it was being imported")
        manifest = _manifest_from(info, name, sha, safe, warning, source)
        if defaults is not None:  # a registry's params/system layers, written with the manifest (one rename)
            manifest = dataclasses.replace(manifest, defaults=defaults)
        with self._locked():
            blob = self.blobs_dir / f"sha256-{sha}"
            new_blob = not blob.exists()
            previous = self._read_manifest(name)
            try:
                if new_blob:
                    os.replace(staged, blob)
                    fsync_dir(self.blobs_dir)
                self._write_manifest(name, manifest)
            except BaseException:
                if new_blob:
                    blob.unlink(missing_ok=True)
                raise
            if previous is not None and previous.sha256 != sha:
                self._collect_blob(previous.sha256)
        return manifest

    def adopt_download(
        self,
        path: Path,
        name: str,
        sha256: str,
        source: str,
        *,
        allow_unsafe_template: bool = False,
        defaults: ModelDefaults | None = None,
    ) -> Manifest:
        """Store a downloaded file already hash-checked against ``sha256`` by moving it (no copy).

        Used by :mod:`haven.models.pull`; the file is validated and scanned like an import.
        """
        parsed = parse_name(name)
        info, safe, warning = self._inspect(path, allow_unsafe_template)
        return self._commit(path, sha256, info, parsed, safe, warning, source, defaults)

    # --- manifests and removal --------------------------------------------------------------------

    def _read_manifest(self, name: ModelName) -> Manifest | None:
        try:
            return Manifest.from_json(self._manifest_path(name).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _write_manifest(self, name: ModelName, manifest: Manifest) -> None:
        path = self._manifest_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{name.tag}-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(manifest.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only succeeds when empty: a first manifest that failed
            raise
        with contextlib.suppress(OSError):  # the manifest is in place; durability of the rename is best effort
            fsync_dir(path.parent)

    def set_defaults(self, name: str, defaults: ModelDefaults) -> Manifest:
        """Replace a model's request defaults (atomically: the manifest is rewritten, the blob untouched)."""
        parsed = parse_name(name)
        with self._locked():
            updated = dataclasses.replace(self.get(str(parsed)), defaults=defaults)
            self._write_manifest(parsed, updated)
        return updated

    def copy(self, source: str, destination: str) -> Manifest:
        """A second name for ``source``'s model (same blob, same defaults); replaces ``destination``."""
        target = parse_name(destination)
        with self._locked():
            original = self.get(source)
            previous = self._read_manifest(target)
            copied = dataclasses.replace(original, name=str(target), modified=datetime.now(UTC))
            self._write_manifest(target, copied)
            if previous is not None and previous.sha256 != original.sha256:
                self._collect_blob(previous.sha256)
        return copied

    # --- uploaded blobs (Ollama's /api/blobs) ------------------------------------------------------

    def has_blob(self, sha256: str) -> bool:
        return (self.blobs_dir / f"sha256-{sha256}").is_file()

    @contextlib.contextmanager
    def blob_upload(self, sha256: str) -> Iterator[BlobUpload]:
        """Write an uploaded blob: bytes go to a temp file in ``blobs/`` while being hashed; on a clean
        exit the hash must equal ``sha256`` (else HashMismatchError, nothing kept), then the blob
        appears atomically. A blob nobody's manifest uses is kept for a later ``/api/create``."""
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".upload-", dir=self.blobs_dir)
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                upload = BlobUpload(fh)
                yield upload
                fh.flush()
                os.fsync(fh.fileno())
            if upload.hexdigest() != sha256:
                raise DigestMismatchError(
                    f"the uploaded bytes hash to sha256:{upload.hexdigest()}, not sha256:{sha256}; nothing was stored"
                )
            os.chmod(temp, 0o644)
            with self._locked():
                os.replace(temp, self.blobs_dir / f"sha256-{sha256}")
                fsync_dir(self.blobs_dir)
        finally:
            temp.unlink(missing_ok=True)

    def import_blob(self, sha256: str, name: str, *, allow_unsafe_template: bool = False) -> Manifest:
        """Store the uploaded blob ``sha256`` under ``name`` (validated and scanned like any import)."""
        blob = self.blobs_dir / f"sha256-{sha256}"
        if not blob.is_file():
            raise ModelNotFoundError(f"no blob sha256:{sha256} in the store; upload it with POST /api/blobs first")
        parsed = parse_name(name)
        info, safe, warning = self._inspect(blob, allow_unsafe_template)
        with self._locked():
            previous = self._read_manifest(parsed)
            manifest = _manifest_from(info, parsed, sha256, safe, warning, f"blob:sha256:{sha256}")
            self._write_manifest(parsed, manifest)
            if previous is not None and previous.sha256 != sha256:
                self._collect_blob(previous.sha256)
        return manifest

    def _collect_blob(self, sha256: str) -> None:
        """Remove a blob no manifest references any more (caller holds the lock)."""
        if any(m.sha256 == sha256 for m in self.list()):
            return
        (self.blobs_dir / f"sha256-{sha256}").unlink(missing_ok=True)

    def remove(self, name: str) -> None:
        parsed = parse_name(name)
        with self._locked():
            manifest = self.get(str(parsed))
            self._manifest_path(parsed).unlink()
            with contextlib.suppress(OSError):
                self._manifest_path(parsed).parent.rmdir()
            self._collect_blob(manifest.sha256)


class BlobUpload:
    """The writable end of :meth:`ModelStore.blob_upload`: ``write`` hashes as it stores."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._digest.update(data)
        self._fh.write(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _manifest_from(info: GGUFInfo, name: ModelName, sha: str, safe: bool, warning: str | None, source: str) -> Manifest:
    return Manifest(
        name=str(name),
        sha256=sha,
        size=info.size,
        architecture=info.architecture,
        parameter_count=info.parameter_count,
        quantization=info.quantization,
        context_length=info.context_length,
        embedding_length=info.embedding_length,
        chat_template=info.chat_template,
        template_safe=safe,
        template_warning=warning,
        bos_token=info.bos_token,
        eos_token=info.eos_token,
        special_tokens=dict(info.special_tokens),
        modified=datetime.now(UTC),
        source=source,
        metadata=dict(info.metadata),
        block_count=info.block_count,
        vocab_size=info.vocab_size,
        bos_token_id=info.bos_token_id,
        eos_token_id=info.eos_token_id,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (except the lock) with its bytes: used by tests to prove nothing changed."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"
    }
