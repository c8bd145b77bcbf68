"""Pulling from a loopback fake hub: resolve, resume with Range, hash check, offline, alias refs."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from haven.errors import (
    DownloadError,
    HashMismatchError,
    InvalidRequestError,
    ModelNotFoundError,
    OfflineError,
    UnsafeTemplateError,
)
from haven.models.hub import HubRef, choose_file, parse_ref
from haven.models.pull import pull
from haven.models.store import ModelStore, snapshot
from haven.settings import Settings
from tests.support.fake_hub import FakeHub, HubFile
from tests.support.tiny_gguf import SSTI_MRO, write_tiny_gguf

REPO = "haven-test/Tiny-GGUF"
FILE = "tiny-q4_k_m.gguf"


@pytest.fixture
def model_bytes(tmp_path: Path) -> bytes:
    return write_tiny_gguf(tmp_path / "src.gguf").read_bytes()


@pytest.fixture
def hub(model_bytes: bytes) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add(REPO, FILE, model_bytes)
        yield fake


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    # Header-only tiny files (not runnable): the trial load is tested with real ones in test_trial_load.py.
    return ModelStore(tmp_path / "models", trial_load_timeout=None)


def _settings(hub: FakeHub, **extra: Any) -> Settings:
    return Settings(hf_endpoint=hub.endpoint, download_timeout_seconds=5, **extra)


def test_pull_exact_file(hub: FakeHub, store: ModelStore, model_bytes: bytes) -> None:
    events: list[tuple[str, int | None, int | None]] = []
    manifest = pull(
        store, f"hf://{REPO}/{FILE}", _settings(hub), lambda s, c=None, t=None, **_: events.append((s, c, t))
    )
    blob: HubFile = hub.files[(REPO, FILE)]
    assert manifest.name == "tiny-q4_k_m:latest" and manifest.sha256 == blob.sha256
    assert manifest.source == f"hf://{REPO}/{FILE}"
    assert store.blob_path(manifest).read_bytes() == model_bytes
    statuses = [e[0] for e in events]
    assert statuses[0] == "pulling manifest" and statuses[-3:] == [
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ]
    assert (f"pulling sha256:{blob.sha256[:12]}", len(model_bytes), len(model_bytes)) in events
    assert sorted(p.name for p in (store.root / "blobs").iterdir()) == [f"sha256-{blob.sha256}"]


def test_interrupted_twice_then_resumed_with_range(hub: FakeHub, store: ModelStore, model_bytes: bytes) -> None:
    size = len(model_bytes)
    hub.cut_after = [300, 400]  # first GET drops after 300 bytes, the second (a resume) after 400 more
    ref = f"hf://{REPO}/{FILE}"
    for expected in (300, 700):
        with pytest.raises(DownloadError) as caught:
            pull(store, ref, _settings(hub), retries=0)
        assert f"interrupted at {expected:,} of {size:,} bytes" in caught.value.message
        assert "run the same command again to resume" in caught.value.message
        assert not store.list()
    manifest = pull(store, ref, _settings(hub), retries=0)
    assert store.blob_path(manifest).read_bytes() == model_bytes
    ranges = [h.get("range") for h in hub.byte_requests()]
    assert ranges == [None, "bytes=300-", "bytes=700-"]  # resumed, never restarted
    assert [h.get("if-range") for h in hub.byte_requests()][1:] == [f'"{manifest.sha256}"'] * 2
    assert sorted(p.name for p in (store.root / "blobs").iterdir()) == [f"sha256-{manifest.sha256}"]


def test_resume_uses_the_byte_servers_etag_and_restarts_when_it_changed(
    hub: FakeHub, store: ModelStore, model_bytes: bytes
) -> None:
    hub.cdn_etag = '"cdn-v1"'
    hub.cut_after = [300]
    with pytest.raises(DownloadError):
        pull(store, f"hf://{REPO}/{FILE}", _settings(hub), retries=0)
    hub.cdn_etag = '"cdn-v2"'  # the CDN object changed: If-Range fails, the server sends the whole file
    manifest = pull(store, f"hf://{REPO}/{FILE}", _settings(hub), retries=0)
    assert store.blob_path(manifest).read_bytes() == model_bytes
    second = hub.byte_requests()[1]
    assert (second.get("range"), second.get("if-range")) == ("bytes=300-", '"cdn-v1"')
    assert sorted(p.name for p in (store.root / "blobs").iterdir()) == [f"sha256-{manifest.sha256}"]


def test_dropped_connections_are_retried_within_one_pull(hub: FakeHub, store: ModelStore, model_bytes: bytes) -> None:
    hub.cut_after = [100, 100]
    manifest = pull(store, f"hf://{REPO}/{FILE}", _settings(hub), retries=3, backoff=0.01)
    assert store.blob_path(manifest).read_bytes() == model_bytes
    assert [h.get("range") for h in hub.byte_requests()] == [None, "bytes=100-", "bytes=200-"]


def test_server_ignoring_range_restarts_cleanly(hub: FakeHub, store: ModelStore, model_bytes: bytes) -> None:
    hub.cut_after = [500]
    with pytest.raises(DownloadError):
        pull(store, f"hf://{REPO}/{FILE}", _settings(hub), retries=0)
    hub.ignore_range = True  # answers 200 with the whole file: the partial must be overwritten, not appended to
    manifest = pull(store, f"hf://{REPO}/{FILE}", _settings(hub), retries=0)
    assert store.blob_path(manifest).read_bytes() == model_bytes


def test_hash_mismatch_discards_the_download(hub: FakeHub, store: ModelStore) -> None:
    hub.corrupt = True
    before = snapshot(store.root) if store.root.exists() else {}
    with pytest.raises(HashMismatchError) as caught:
        pull(store, f"hf://{REPO}/{FILE}", _settings(hub))
    assert "the download was discarded" in caught.value.message
    assert snapshot(store.root) == before
    assert not list((store.root / "blobs").iterdir())


def test_offline_is_one_clear_line(store: ModelStore) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(hf_endpoint=f"http://127.0.0.1:{port}")
    with pytest.raises(OfflineError) as caught:
        pull(store, f"hf://{REPO}/{FILE}", settings)
    assert caught.value.message == (
        f"cannot reach http://127.0.0.1:{port}: connection refused; "
        "Haven works offline with models you import: haven models import PATH"
    )
    assert not store.root.exists() or not snapshot(store.root)


def test_token_is_sent_as_bearer(hub: FakeHub, store: ModelStore) -> None:
    hub.token = "s3cret"
    with pytest.raises(DownloadError) as caught:
        pull(store, f"hf://{REPO}/{FILE}", _settings(hub))
    assert "HTTP 401" in caught.value.message and "HAVEN_HF_TOKEN" in caught.value.message
    manifest = pull(store, f"hf://{REPO}/{FILE}", _settings(hub, hf_token=SecretStr("s3cret")))
    assert store.exists(manifest.name)


def test_missing_file_is_not_found(hub: FakeHub, store: ModelStore) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        pull(store, f"hf://{REPO}/nope.gguf", _settings(hub))
    assert "not found on the hub" in caught.value.message


def test_alias_picks_the_quant_through_the_tree_api(hub: FakeHub, store: ModelStore, tmp_path: Path) -> None:
    hub.add(REPO, "tiny-q8_0.gguf", write_tiny_gguf(tmp_path / "q8.gguf", seed=3))
    hub.add(REPO, "README.md", b"# readme")
    manifest = pull(store, f"hf.co/{REPO}:Q8_0", _settings(hub))
    assert manifest.name == "tiny-gguf:q8_0" and manifest.sha256 == hub.files[(REPO, "tiny-q8_0.gguf")].sha256
    default = pull(store, f"hf.co/{REPO}", _settings(hub), name="tiny:default")  # two GGUFs: Q4_K_M preferred
    assert default.sha256 == hub.files[(REPO, FILE)].sha256
    with pytest.raises(ModelNotFoundError) as caught:
        pull(store, f"hf.co/{REPO}:Q2_K", _settings(hub))
    assert "no file in haven-test/Tiny-GGUF match 'Q2_K'" in caught.value.message


def test_unsafe_template_refused_but_download_kept_for_a_retry(hub: FakeHub, store: ModelStore, tmp_path: Path) -> None:
    evil = hub.add(REPO, "evil.gguf", write_tiny_gguf(tmp_path / "evil.gguf", template=SSTI_MRO))
    with pytest.raises(UnsafeTemplateError):
        pull(store, f"hf://{REPO}/evil.gguf", _settings(hub))
    assert not store.list()
    manifest = pull(store, f"hf://{REPO}/evil.gguf", _settings(hub), allow_unsafe_template=True)
    assert not manifest.template_safe and manifest.sha256 == evil.sha256
    assert len(hub.byte_requests()) == 1  # the second pull reused the verified partial


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("hf://a/b/c.gguf", HubRef("a/b", "c.gguf", None, "main")),
        ("hf://a/b/sub/c.gguf@v1.0", HubRef("a/b", "sub/c.gguf", None, "v1.0")),
        ("hf.co/bartowski/Qwen2.5-0.5B-GGUF:Q4_K_M", HubRef("bartowski/Qwen2.5-0.5B-GGUF", None, "Q4_K_M", "main")),
        ("https://huggingface.co/o/r", HubRef("o/r", None, None, "main")),
    ],
)
def test_parse_ref(ref: str, expected: HubRef) -> None:
    assert parse_ref(ref) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "hf://a/b",
        "hf://a/b/c.bin",
        "hf://../b/c.gguf",
        "hf://a/b/../c.gguf",
        "ollama.com/x",
        "hf.co/a",
        "hf://a/b/c.gguf@..",
    ],
)
def test_bad_refs(ref: str, store: ModelStore) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        pull(store, ref, Settings(hf_endpoint="http://127.0.0.1:9"))
    assert caught.value.message.startswith(f"cannot understand model reference {ref!r}")


def test_choose_file_matches_whole_quant_names() -> None:
    files = ["m-Q4_K_M.gguf", "m-Q4_K_S.gguf", "m-IQ4_XS.gguf"]
    assert choose_file(HubRef("o/r", None, "q4_k_m"), files) == "m-Q4_K_M.gguf"
    assert choose_file(HubRef("o/r", None, "IQ4_XS"), files) == "m-IQ4_XS.gguf"
    with pytest.raises(ModelNotFoundError):
        choose_file(HubRef("o/r", None, "Q4_K"), files)  # a prefix of two names is not a match
