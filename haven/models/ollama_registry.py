"""Pulls by the names Ollama users type (``qwen2.5:0.5b``, ``deepseek-r1:1.5b``, ``user/model:tag``).

An Ollama registry (``HAVEN_OLLAMA_REGISTRY``, default ``https://registry.ollama.ai``) speaks the OCI
distribution API: ``GET /v2/{namespace}/{model}/manifests/{tag}`` returns a JSON manifest whose ``layers``
each carry a ``mediaType``, a ``digest`` (``sha256:<64 hex>``) and a ``size``, and
``GET /v2/{namespace}/{model}/blobs/{digest}`` returns a layer's bytes (the public registry redirects to
a CDN over https). The layers Haven uses:

* ``application/vnd.ollama.image.model`` — the GGUF file (exactly one), downloaded resumably into the
  store and hash-checked (:mod:`haven.models.transfer`);
* ``…image.params`` — JSON of Ollama options (``stop``, ``temperature``, ``top_p``, …): the model's
  :class:`~haven.models.manifest.ModelDefaults` (options Haven does not know are listed and skipped);
* ``…image.system`` — the default system prompt.

``…image.template`` (a Go template: Haven renders the GGUF's own Jinja template), ``…image.license`` and
``…image.messages`` are ignored; ``…image.projector`` (vision) is skipped, the model serves text;
``…image.adapter`` (LoRA) is refused, since the weights alone would be a different model.

Every digest is validated strictly before any path or URL is built from it (Ollama's CVE-2024-37032 was
a manifest digest of ``../``); sizes must be plausible; the manifest and the small layers are read with
a size cap and hash-checked. Any registry failure is one line and leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import httpx

from haven.errors import DownloadError, HashMismatchError, InvalidRequestError, ModelNotFoundError
from haven.models.hub import offline_error
from haven.models.manifest import DEFAULT_PARAMETER_TYPES, ModelDefaults
from haven.models.transfer import MAX_REDIRECTS, Blob, CancelToken, redirect_guard

DEFAULT_REGISTRY = "https://registry.ollama.ai"
MANIFEST_MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
MODEL_LAYER = "application/vnd.ollama.image.model"
PARAMS_LAYER = "application/vnd.ollama.image.params"
SYSTEM_LAYER = "application/vnd.ollama.image.system"
ADAPTER_LAYER = "application/vnd.ollama.image.adapter"
PROJECTOR_LAYER = "application/vnd.ollama.image.projector"
MAX_MANIFEST_BYTES = 1 << 20
MAX_SMALL_LAYER_BYTES = 256 << 10
MAX_MODEL_BYTES = 1 << 40  # 1 TiB: more than any GGUF there is; a larger declared size is a lie or an attack

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_NAMESPACE = re.compile(r"[a-z0-9][a-z0-9_-]{0,79}")
_MODEL = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")
_TAG = re.compile(r"[a-z0-9_][a-z0-9._-]{0,127}")


@dataclass(frozen=True)
class OllamaRef:
    namespace: str
    model: str
    tag: str

    @property
    def path(self) -> str:
        return f"{self.namespace}/{self.model}"

    def store_name(self) -> str:
        """``library/qwen2.5:0.5b`` → ``qwen2.5:0.5b``; ``user/model:tag`` → ``user-model:tag``."""
        base = self.model if self.namespace == "library" else f"{self.namespace}-{self.model}"
        return f"{base}:{self.tag}"


@dataclass(frozen=True)
class Layer:
    media_type: str
    sha256: str
    size: int


@dataclass(frozen=True)
class RegistryModel:
    ref: OllamaRef
    model: Layer
    params: Layer | None
    system: Layer | None
    ignored: tuple[str, ...]


def _bad_ref(ref: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"cannot understand model reference {ref!r}: {why} "
        "(use an Ollama name such as qwen2.5:0.5b or user/model:tag, hf://OWNER/REPO/FILE.gguf or hf.co/OWNER/REPO)"
    )


def parse_ollama_ref(ref: str, registry: str = DEFAULT_REGISTRY) -> OllamaRef:
    """``qwen2.5:0.5b`` / ``library/qwen2.5`` / ``registry.ollama.ai/library/qwen2.5:0.5b`` → OllamaRef.

    A host in the name must be the configured registry's: a pull never goes to a host named by the request.
    """
    raw = ref.strip()
    if len(raw) > 300 or any(ord(c) < 33 or ord(c) == 127 for c in raw):
        raise _bad_ref(ref[:100], "too long or contains spaces or control characters")
    lowered = raw.lower()
    for prefix in ("https://", "http://"):
        lowered = lowered.removeprefix(prefix)
    if lowered.count(":") > 1:
        raise _bad_ref(ref, "more than one ':'")
    body, _, tag = lowered.partition(":")
    parts = body.split("/")
    if len(parts) == 3:
        host = httpx.URL(registry).host
        if parts[0] != host:
            raise _bad_ref(ref, f"Haven pulls Ollama names only from HAVEN_OLLAMA_REGISTRY ({host})")
        parts = parts[1:]
    if len(parts) == 1:
        parts = ["library", parts[0]]
    if len(parts) != 2:
        raise _bad_ref(ref, "too many '/'")
    namespace, model = parts
    tag = tag or "latest"
    if not _NAMESPACE.fullmatch(namespace):
        raise _bad_ref(ref, f"{namespace!r} is not a valid namespace")
    if not _MODEL.fullmatch(model) or ".." in model:
        raise _bad_ref(ref, f"{model!r} is not a valid model name")
    if not _TAG.fullmatch(tag) or ".." in tag:
        raise _bad_ref(ref, f"{tag!r} is not a valid tag")
    return OllamaRef(namespace, model, tag)


def parse_digest(value: object, where: str) -> str:
    """The 64 hex characters of a strict ``sha256:<64 lowercase hex>`` digest, or a DownloadError."""
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        shown = repr(value)[:80]
        raise DownloadError(f"the registry's manifest has an invalid digest {shown} in {where}; refusing it")
    return value.removeprefix("sha256:")


def parse_manifest(data: bytes, ref: OllamaRef) -> RegistryModel:
    """Validate a manifest body (see the module docs) before anything is built from it."""
    what = f"{ref.path}:{ref.tag}"
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise DownloadError(f"the registry's manifest for {what} is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list):
        raise DownloadError(f"the registry's manifest for {what} has no list of layers")
    layers: list[Layer] = []
    for index, entry in enumerate(doc["layers"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("mediaType"), str):
            raise DownloadError(f"layer {index} of the manifest for {what} is malformed")
        sha = parse_digest(entry.get("digest"), f"layer {index}")
        size = entry.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_MODEL_BYTES:
            raise DownloadError(
                f"layer {index} of the manifest for {what} declares an implausible size {str(size)[:40]} "
                f"(at most {MAX_MODEL_BYTES:,} bytes)"
            )
        layers.append(Layer(entry["mediaType"], sha, size))
    models = [layer for layer in layers if layer.media_type == MODEL_LAYER]
    if len(models) != 1:
        raise DownloadError(f"the manifest for {what} has {len(models)} model layers, expected one")
    if any(layer.media_type == ADAPTER_LAYER for layer in layers):
        raise DownloadError(f"{what} applies a LoRA adapter to its weights; Haven does not support adapters")

    def single(kind: str) -> Layer | None:
        found = [layer for layer in layers if layer.media_type == kind]
        if len(found) > 1:
            raise DownloadError(f"the manifest for {what} has {len(found)} {kind.rsplit('.', 1)[-1]} layers")
        if found and found[0].size > MAX_SMALL_LAYER_BYTES:
            raise DownloadError(
                f"the {kind.rsplit('.', 1)[-1]} layer of {what} is larger than {MAX_SMALL_LAYER_BYTES:,} bytes"
            )
        return found[0] if found else None

    ignored = tuple(sorted({layer.media_type.rsplit(".", 1)[-1] for layer in layers} - {"model", "params", "system"}))
    return RegistryModel(ref, models[0], single(PARAMS_LAYER), single(SYSTEM_LAYER), ignored)


def defaults_from_layers(params: bytes | None, system: bytes | None, what: str) -> tuple[ModelDefaults, list[str]]:
    """ModelDefaults from a params layer (JSON options) and a system layer (text); also the skipped options."""
    stop: tuple[str, ...] = ()
    parameters: dict[str, Any] = {}
    skipped: list[str] = []
    if params is not None:
        try:
            doc = json.loads(params)
        except (ValueError, RecursionError):
            raise DownloadError(f"the params layer of {what} is not JSON") from None
        if not isinstance(doc, dict):
            raise DownloadError(f"the params layer of {what} is not a JSON object")
        for key, value in doc.items():
            if key == "stop":
                values = value if isinstance(value, list) else [value]
                if not all(isinstance(v, str) and 0 < len(v) <= 200 for v in values) or len(values) > 16:
                    raise DownloadError(f"the params layer of {what} has an invalid stop list")
                stop = tuple(values)
            elif key in DEFAULT_PARAMETER_TYPES:
                expected = DEFAULT_PARAMETER_TYPES[key]
                if isinstance(value, bool) or not isinstance(value, expected):
                    raise DownloadError(f"the params layer of {what} sets {key} to {str(value)[:40]!r}, not a number")
                if isinstance(value, float) and not math.isfinite(value):
                    raise DownloadError(f"the params layer of {what} sets {key} to a non-finite number")
                parameters[key] = value
            else:
                skipped.append(str(key)[:40])
    system_text: str | None = None
    if system is not None:
        try:
            system_text = system.decode("utf-8")
        except UnicodeDecodeError:
            raise DownloadError(f"the system layer of {what} is not UTF-8 text") from None
    return ModelDefaults(system=system_text or None, stop=stop, parameters=parameters), skipped


class RegistryClient:
    """Thin httpx wrapper for one Ollama-compatible registry (manifests and blobs)."""

    def __init__(self, endpoint: str, timeout: float) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.client = httpx.Client(
            headers={"User-Agent": "haven-model-store"},
            timeout=timeout,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            event_hooks={"response": [redirect_guard(self.endpoint)]},
        )

    def close(self) -> None:
        self.client.close()

    def blob_url(self, ref: OllamaRef, sha256: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):  # parse_digest made sure; a URL is never built otherwise
            raise DownloadError("refusing to build a blob URL from an invalid digest")
        return f"{self.endpoint}/v2/{ref.path}/blobs/sha256:{sha256}"

    def blob(self, ref: OllamaRef, layer: Layer) -> Blob:
        return Blob(self.blob_url(ref, layer.sha256), layer.sha256, layer.size, f"{ref.model}:{ref.tag}")

    def raise_for_status(self, response: httpx.Response, url: str) -> None:
        status = response.status_code
        if status in (401, 403):
            raise DownloadError(f"the registry refused {url} (HTTP {status}): private models are not supported")
        if status == 404:
            raise ModelNotFoundError(f"not found in the registry: {url}")
        if status == 429:
            raise DownloadError(f"the registry is rate-limiting pulls (HTTP 429) for {url}; try again later")
        if status >= 400:
            raise DownloadError(f"the registry answered HTTP {status} for {url}")

    def _read_small(self, url: str, limit: int, cancel: CancelToken, accept: str | None = None) -> bytes:
        headers = {"Accept": accept} if accept else {}
        try:
            with self.client.stream("GET", url, headers=headers) as response, cancel.watching(response):
                self.raise_for_status(response, url)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise DownloadError(f"the registry sent more than {limit:,} bytes for {url}")
                return bytes(body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            cancel.check()
            raise offline_error(self.endpoint, exc) from None
        except httpx.HTTPError as exc:
            cancel.check()
            raise DownloadError(f"reading {url} failed: {exc or type(exc).__name__}") from None

    def manifest(self, ref: OllamaRef, cancel: CancelToken) -> RegistryModel:
        url = f"{self.endpoint}/v2/{ref.path}/manifests/{ref.tag}"
        try:
            data = self._read_small(url, MAX_MANIFEST_BYTES, cancel, accept=", ".join(MANIFEST_MEDIA_TYPES))
        except ModelNotFoundError:
            raise ModelNotFoundError(
                f"{ref.path}:{ref.tag} is not in the registry {self.endpoint} (check the name and tag)"
            ) from None
        return parse_manifest(data, ref)

    def small_layer(self, ref: OllamaRef, layer: Layer, cancel: CancelToken) -> bytes:
        """A params or system layer, hash-checked."""
        data = self._read_small(self.blob_url(ref, layer.sha256), MAX_SMALL_LAYER_BYTES, cancel)
        if len(data) != layer.size or hashlib.sha256(data).hexdigest() != layer.sha256:
            raise HashMismatchError(
                f"the {layer.media_type.rsplit('.', 1)[-1]} layer of {ref.model}:{ref.tag} does not match its digest"
            )
        return data
