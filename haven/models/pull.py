"""``haven models pull``: resumable, hash-checked downloads into the store, from two kinds of registry.

* Hugging Face references (``hf://OWNER/REPO/FILE.gguf``, ``hf.co/OWNER/REPO[:QUANT]``): the reference is
  resolved to one file and its published sha256 (:mod:`haven.models.hub`).
* Every other reference is an Ollama library name (``qwen2.5:0.5b``, ``user/model:tag``) pulled from
  ``HAVEN_OLLAMA_REGISTRY`` (:mod:`haven.models.ollama_registry`): the manifest, its small ``params`` /
  ``system`` layers (the model's defaults) and then the GGUF layer.

Either way the bytes go to ``blobs/partial-<sha256>`` (:mod:`haven.models.transfer`: resumable with Range,
retried, bounded by the declared size and the free disk, https-only redirects, cancellable). The finished
file is hashed; a mismatch deletes it (HashMismatchError). Only then is it validated, scanned and moved
into the store like an import, with its defaults in the same manifest write. A cancelled or interrupted
pull keeps its partial file so the next pull of the same blob resumes it.

Progress is reported Ollama-style: ``progress(status, completed, total)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from haven.egress import allowing
from haven.errors import HashMismatchError, InvalidModelFileError
from haven.models.hashing import sha256_file
from haven.models.hub import HubClient, RemoteFile, is_hub_ref, offline_error, parse_ref
from haven.models.manifest import Manifest, ModelDefaults
from haven.models.names import DEFAULT_TAG, name_from_filename, parse_name
from haven.models.ollama_registry import RegistryClient, defaults_from_layers, parse_ollama_ref
from haven.models.store import ModelStore
from haven.models.transfer import (
    Blob,
    CancelToken,
    PullProgress,
    Registry,
    check_disk_space,
    discard,
    download,
    exclusive,
    pull_slot,
)
from haven.settings import Settings

__all__ = ["CancelToken", "PullProgress", "default_name", "pull"]


def _ignore(status: str, completed: int | None = None, total: int | None = None, **extra: Any) -> None:
    return None


def default_name(remote: RemoteFile, quant: str | None) -> str:
    """``hf.co/owner/Repo-GGUF:Q4_K_M`` → ``repo-gguf:q4_k_m``; an exact file → its file name, tag latest."""
    if quant:
        return f"{name_from_filename(remote.repo.split('/', 1)[1])}:{name_from_filename(quant)}"
    return f"{name_from_filename(remote.filename)}:{DEFAULT_TAG}"


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
    cancel: CancelToken | None = None,
) -> Manifest:
    """Download ``ref`` into ``store`` and return its manifest (see the module docs).

    ``cancel``: set it from another thread to stop the pull (PullCancelledError) within moments.
    """
    report: PullProgress = progress or _ignore
    token = cancel or CancelToken()
    if name is not None:
        parse_name(name)  # a bad name fails before any network traffic
    allow = settings.allow_unsafe_templates if allow_unsafe_template is None else allow_unsafe_template
    job = _Job(store, settings, report, allow, retries, backoff, token)
    if is_hub_ref(ref):
        hub_ref = parse_ref(ref)
        # The egress guard opens the hub for exactly as long as this pull runs (issue 17).
        with pull_slot(settings.max_concurrent_pulls), allowing([_destination(settings.hf_endpoint)]):
            return job.from_hub(hub_ref, ref, name)
    ollama_ref = parse_ollama_ref(ref, settings.ollama_registry)
    with pull_slot(settings.max_concurrent_pulls), allowing([_destination(settings.ollama_registry)]):
        return job.from_ollama(ollama_ref, name)


def _destination(endpoint: str) -> str:
    url = httpx.URL(endpoint)
    return f"{url.host}:{url.port or (443 if url.scheme == 'https' else 80)}"


class _Job:
    """One pull's context: where it stores, how it reports, when it stops."""

    def __init__(
        self,
        store: ModelStore,
        settings: Settings,
        report: PullProgress,
        allow: bool,
        retries: int,
        backoff: float,
        cancel: CancelToken,
    ) -> None:
        self.store, self.settings, self.report, self.allow = store, settings, report, allow
        self.retries, self.backoff, self.cancel = retries, backoff, cancel

    def from_hub(self, hub_ref: Any, ref: str, name: str | None) -> Manifest:
        token = self.settings.hf_token.get_secret_value() if self.settings.hf_token else None
        client = HubClient(self.settings.hf_endpoint, token, self.settings.download_timeout_seconds)
        try:
            self.report("pulling manifest")
            self.cancel.check()
            remote = client.resolve(hub_ref)
            target = name or default_name(remote, hub_ref.quant)
            parse_name(target)
            return self.fetch_and_adopt(client, remote.blob(client), target, remote.source, None)
        finally:
            client.close()

    def from_ollama(self, ref: Any, name: str | None) -> Manifest:
        client = RegistryClient(self.settings.ollama_registry, self.settings.download_timeout_seconds)
        try:
            self.report("pulling manifest")
            model = client.manifest(ref, self.cancel)
            target = name or ref.store_name()
            parse_name(target)
            what = f"{ref.path}:{ref.tag}"
            params = client.small_layer(ref, model.params, self.cancel) if model.params else None
            system = client.small_layer(ref, model.system, self.cancel) if model.system else None
            defaults, skipped = defaults_from_layers(params, system, what)
            if skipped:
                self.report(f"ignoring options Haven does not support: {', '.join(sorted(skipped))}")
            source = f"ollama://{client.endpoint.split('://', 1)[-1]}/{what}"
            return self.fetch_and_adopt(client, client.blob(ref, model.model), target, source, defaults)
        finally:
            client.close()

    def fetch_and_adopt(
        self, registry: Registry, blob: Blob, target: str, source: str, defaults: ModelDefaults | None
    ) -> Manifest:
        store = self.store
        store.blobs_dir.mkdir(parents=True, exist_ok=True)
        partial = store.partial_path(blob.sha256)
        with exclusive(partial):
            have = partial.stat().st_size if partial.exists() else 0
            check_disk_space(store.blobs_dir, max(blob.size - have, 0), self.settings.pull_min_free_bytes, blob.label)
            download(
                registry, blob, partial, self.report, offline_error=offline_error, cancel=self.cancel,
                retries=self.retries, backoff=self.backoff,
            )  # fmt: skip
            self.report("verifying sha256 digest")
            actual = sha256_file(partial, lambda done, total: self.cancel.check())
            if actual != blob.sha256:
                discard(partial)
                raise HashMismatchError(
                    f"the downloaded {blob.label} has sha256 {actual[:12]}…, but the registry publishes "
                    f"{blob.sha256[:12]}…; the download was discarded"
                )
            self.report("writing manifest")
            try:
                manifest = store.adopt_download(
                    partial, target, blob.sha256, source, allow_unsafe_template=self.allow, defaults=defaults
                )
            except InvalidModelFileError:
                discard(partial)  # verified bytes, but not a model Haven accepts: nothing to resume
                raise
            # UnsafeTemplateError keeps the verified partial: `pull --allow-unsafe-template` then needs no download.
            discard(partial)  # already moved when the blob was new; a duplicate otherwise
        self.report("success")
        return manifest
