"""Pulls by Ollama name against a loopback Ollama-compatible registry: defaults from the params/system
layers, resume, and every registry failure one line with the store unchanged."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haven.errors import (
    DownloadError,
    HashMismatchError,
    HavenError,
    InvalidRequestError,
    ModelNotFoundError,
    OfflineError,
    PullCancelledError,
    QueueFullError,
)
from haven.models.ollama_registry import OllamaRef, parse_ollama_ref
from haven.models.pull import CancelToken, pull
from haven.models.store import ModelStore, snapshot
from haven.models.transfer import pull_slot
from haven.settings import Settings
from tests.support.fake_ollama_registry import FakeOllamaRegistry
from tests.support.tiny_gguf import write_tiny_gguf

PARAMS = {"stop": ["<|im_start|>", "<|im_end|>"], "temperature": 0.6, "top_k": 20, "num_gpu": 99}


@pytest.fixture
def model_bytes(tmp_path: Path) -> bytes:
    return write_tiny_gguf(tmp_path / "src.gguf").read_bytes()


@pytest.fixture
def registry(model_bytes: bytes) -> Iterator[FakeOllamaRegistry]:
    with FakeOllamaRegistry() as fake:
        fake.add_model("qwen2.5", "0.5b", model_bytes, params=PARAMS, system="You are Qwen.")
        yield fake


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "models", trial_load_timeout=None)  # header-only test files
    store.root.mkdir()
    return store


def _settings(registry: FakeOllamaRegistry, **extra: Any) -> Settings:
    return Settings(**{"ollama_registry": registry.endpoint, "download_timeout_seconds": 5, **extra})


def _refused(store: ModelStore, registry: FakeOllamaRegistry, ref: str = "qwen2.5:0.5b", **kw: Any) -> HavenError:
    """Pull ``ref``, expect a one-line HavenError and an unchanged store; return the error."""
    before = snapshot(store.root)
    with pytest.raises(HavenError) as caught:
        pull(store, ref, _settings(registry), retries=kw.pop("retries", 0), backoff=0, **kw)
    assert "\n" not in caught.value.message
    assert snapshot(store.root) == before
    return caught.value


def test_pull_by_name_stores_the_model_and_its_defaults(
    registry: FakeOllamaRegistry, store: ModelStore, model_bytes: bytes
) -> None:
    events: list[str] = []
    manifest = pull(store, "qwen2.5:0.5b", _settings(registry), lambda s, c=None, t=None, **_: events.append(s))
    assert manifest.name == "qwen2.5:0.5b" and store.blob_path(manifest).read_bytes() == model_bytes
    assert manifest.source == f"ollama://{registry.endpoint.removeprefix('http://')}/library/qwen2.5:0.5b"
    defaults = store.get("qwen2.5:0.5b").defaults
    assert defaults.system == "You are Qwen."
    assert defaults.stop == ("<|im_start|>", "<|im_end|>")
    assert defaults.parameters == {"temperature": 0.6, "top_k": 20}
    assert "ignoring options Haven does not support: num_gpu" in events
    assert events[0] == "pulling manifest" and events[-1] == "success"
    assert sorted(p.name for p in store.blobs_dir.iterdir()) == [f"sha256-{manifest.sha256}"]
    blob_gets = [p for m, p, _ in registry.requests if "/blobs/" in p]
    assert len(blob_gets) == 3  # params, system, model: never the template or license layers


def test_namespaced_names_and_an_explicit_name(
    registry: FakeOllamaRegistry, store: ModelStore, model_bytes: bytes
) -> None:
    registry.add_model("someone/tiny", "latest", model_bytes)
    assert pull(store, "someone/tiny", _settings(registry)).name == "someone-tiny:latest"
    assert pull(store, "someone/tiny", _settings(registry), name="mine:v1").name == "mine:v1"
    assert store.get("mine:v1").defaults.empty


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("qwen2.5:0.5b", OllamaRef("library", "qwen2.5", "0.5b")),
        ("DeepSeek-R1:1.5B", OllamaRef("library", "deepseek-r1", "1.5b")),
        ("llama3.2", OllamaRef("library", "llama3.2", "latest")),
        ("user/model:q4", OllamaRef("user", "model", "q4")),
        ("registry.ollama.ai/library/qwen2.5:0.5b", OllamaRef("library", "qwen2.5", "0.5b")),
    ],
)
def test_parse_ollama_ref(ref: str, expected: OllamaRef) -> None:
    assert parse_ollama_ref(ref) == expected


@pytest.mark.parametrize(
    "ref",
    ["../etc:passwd", "a/../b", "qwen:..", "evil.example/library/qwen:1", "a:b:c", "a/b/c/d", "qw en", "x" * 400,
     "ollama.com/x", "qwen:../../x"],
)  # fmt: skip
def test_bad_names_fail_before_any_request(ref: str, registry: FakeOllamaRegistry, store: ModelStore) -> None:
    error = _refused(store, registry, ref)
    assert isinstance(error, InvalidRequestError) and error.message.startswith("cannot understand model reference")
    assert registry.requests == []


def test_an_interrupted_download_resumes_with_range(
    registry: FakeOllamaRegistry, store: ModelStore, model_bytes: bytes
) -> None:
    registry.cut_after = [500]
    with pytest.raises(DownloadError, match=f"interrupted at 500 of {len(model_bytes):,} bytes"):
        pull(store, "qwen2.5:0.5b", _settings(registry), retries=0)
    partials = [p for p in store.blobs_dir.iterdir() if p.name.startswith("partial-")]
    assert [p.stat().st_size for p in partials if not p.name.endswith(".etag")] == [500]  # resumable by design
    manifest = pull(store, "qwen2.5:0.5b", _settings(registry))
    assert store.blob_path(manifest).read_bytes() == model_bytes
    assert registry.byte_requests()[-1]["range"] == "bytes=500-"
    assert not [p for p in store.blobs_dir.iterdir() if p.name.startswith("partial-")]


def test_a_wrong_digest_is_discarded(registry: FakeOllamaRegistry, store: ModelStore, model_bytes: bytes) -> None:
    registry.corrupt = True
    error = _refused(store, registry)  # the params layer comes first
    assert isinstance(error, HashMismatchError) and "the params layer of qwen2.5:0.5b does not match" in error.message
    registry.add_model("plain", "1", model_bytes)
    error = _refused(store, registry, "plain:1")
    assert isinstance(error, HashMismatchError) and "the download was discarded" in error.message


def _manifest_with(registry: FakeOllamaRegistry, model_layer: dict[str, Any]) -> None:
    registry.manifests[("library/qwen2.5", "0.5b")] = json.dumps({"schemaVersion": 2, "layers": [model_layer]}).encode()


@pytest.mark.parametrize(
    "digest",
    ["sha256:../../../../etc/passwd", "sha256:" + "../" * 21 + "a", "../sha256-" + "a" * 64, "sha256:" + "A" * 64,
     "sha512:" + "a" * 64, "sha256:" + "a" * 63, "sha256:" + "a" * 64 + "/../x", 12, None],
)  # fmt: skip
def test_digests_that_could_point_outside_are_refused_before_any_path(
    digest: object, registry: FakeOllamaRegistry, store: ModelStore
) -> None:
    _manifest_with(registry, {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": 10})
    error = _refused(store, registry)
    assert "invalid digest" in error.message
    assert not [p for m, p, _ in registry.requests if "/blobs/" in p]


def test_a_huge_declared_size_is_refused_before_downloading(registry: FakeOllamaRegistry, store: ModelStore) -> None:
    sha = next(iter(registry.files.values())).sha256
    layer = {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{sha}", "size": 10**15}
    _manifest_with(registry, layer)
    assert "implausible size" in _refused(store, registry).message
    _manifest_with(registry, {**layer, "size": 1 << 39})  # plausible, but more than this disk has free
    assert _refused(store, registry).message.startswith("not enough disk space for qwen2.5:0.5b")
    assert not [p for m, p, _ in registry.requests if "/blobs/" in p]


@pytest.mark.parametrize(
    ("status", "kind", "text"),
    [
        (401, DownloadError, "(HTTP 401): private models are not supported"),
        (404, ModelNotFoundError, "library/qwen2.5:0.5b is not in the registry"),
        (500, DownloadError, "the registry answered HTTP 500"),
        (429, DownloadError, "rate-limiting"),
    ],
)
def test_registry_errors_are_one_line(
    status: int, kind: type[HavenError], text: str, registry: FakeOllamaRegistry, store: ModelStore
) -> None:
    registry.status = status
    error = _refused(store, registry)
    assert isinstance(error, kind) and text in error.message


def test_an_unknown_model_is_not_found(registry: FakeOllamaRegistry, store: ModelStore) -> None:
    error = _refused(store, registry, "nosuch:7b")
    assert isinstance(error, ModelNotFoundError) and "library/nosuch:7b is not in the registry" in error.message


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"<html>sign in</html>", "is not JSON"),
        (b"[" * 100_000, "is not JSON"),
        (b'{"schemaVersion": 2}', "has no list of layers"),
        (b'{"layers": [{"digest": 1}]}', "layer 0 of the manifest for library/qwen2.5:0.5b is malformed"),
        (b'{"layers": []}', "has 0 model layers, expected one"),
        (b"x" * (2 << 20), "the registry sent more than 1,048,576 bytes"),
    ],
)
def test_malformed_manifests_are_one_line(
    body: bytes, text: str, registry: FakeOllamaRegistry, store: ModelStore
) -> None:
    registry.manifests[("library/qwen2.5", "0.5b")] = body
    assert text in _refused(store, registry).message


def test_truncated_bodies(registry: FakeOllamaRegistry, store: ModelStore, model_bytes: bytes) -> None:
    registry.truncate_manifest = True
    assert "reading " in _refused(store, registry).message
    registry.truncate_manifest = False
    registry.cut_after = [100, 100]
    message = _refused_keeping_partial(store, registry)
    assert "was interrupted at" in message and "run the same command again to resume" in message


def _refused_keeping_partial(store: ModelStore, registry: FakeOllamaRegistry) -> str:
    with pytest.raises(DownloadError) as caught:
        pull(store, "qwen2.5:0.5b", _settings(registry), retries=1, backoff=0)
    assert not store.exists("qwen2.5:0.5b") and not list(store.manifests_dir.glob("*/*"))
    return caught.value.message


@pytest.mark.parametrize(
    ("params", "text"),
    [(b"not json", "the params layer of library/qwen2.5:0.5b is not JSON"), ({"temperature": "hot"}, "not a number"),
     ({"stop": [1]}, "invalid stop list"), (b"[1]", "is not a JSON object")],
)  # fmt: skip
def test_bad_params_layers(
    params: Any, text: str, registry: FakeOllamaRegistry, store: ModelStore, model_bytes: bytes
) -> None:
    registry.add_model("qwen2.5", "0.5b", model_bytes, params=params)
    assert text in _refused(store, registry).message


def test_adapters_are_refused(registry: FakeOllamaRegistry, store: ModelStore, model_bytes: bytes) -> None:
    registry.add_model("qwen2.5", "0.5b", model_bytes, extra=[registry.layer("adapter", b"lora")])
    assert "LoRA adapter" in _refused(store, registry).message


def test_redirects_to_plain_http_elsewhere_are_refused(registry: FakeOllamaRegistry, store: ModelStore) -> None:
    registry.redirect_to = registry.endpoint.replace("127.0.0.1", "localhost")  # same server, another origin
    error = _refused(store, registry)
    assert "refusing a redirect from 127.0.0.1 to http://localhost: only https redirects are followed" in error.message


def test_an_unreachable_registry_is_offline(store: ModelStore) -> None:
    with pytest.raises(OfflineError, match="cannot reach http://127.0.0.1:9: connection refused"):
        pull(store, "qwen2.5:0.5b", Settings(ollama_registry="http://127.0.0.1:9"))


def test_a_cancelled_pull_stops_its_worker_quickly_and_keeps_a_resumable_partial(
    registry: FakeOllamaRegistry, store: ModelStore, model_bytes: bytes
) -> None:
    registry.stall_after = 700  # the server sends 700 bytes, then nothing, without closing
    token = CancelToken()
    seen: list[int] = []
    outcome: list[BaseException] = []

    def work() -> None:
        try:
            pull(store, "qwen2.5:0.5b", _settings(registry, download_timeout_seconds=60), cancel=token,
                 progress=lambda s, c=None, t=None, **_: seen.append(c or 0))  # fmt: skip
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 10
    while 700 not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert 700 in seen, outcome
    token.cancel()
    worker.join(timeout=2)  # the read timeout is 60 s: only the cancel can free the worker this soon
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], PullCancelledError)
    registry.release.set()
    registry.stall_after = None
    pull(store, "qwen2.5:0.5b", _settings(registry))  # the partial is resumed, not restarted
    assert registry.byte_requests()[-1]["range"] == "bytes=700-"


def test_the_concurrent_pull_cap(registry: FakeOllamaRegistry, store: ModelStore) -> None:
    with pull_slot(2), pull_slot(2), pytest.raises(QueueFullError, match="HAVEN_MAX_CONCURRENT_PULLS=2"):
        pull(store, "qwen2.5:0.5b", _settings(registry, max_concurrent_pulls=2))
    assert registry.requests == []
    pull(store, "qwen2.5:0.5b", _settings(registry, max_concurrent_pulls=1))  # slots are given back
