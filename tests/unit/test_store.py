"""The content-addressed model store: import, list, get, remove, verify, and the bad-input paths.

Every failing path asserts the store is byte-for-byte unchanged (``snapshot`` of blobs and manifests).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from haven.engine.chat_template import ChatTemplate, TemplateSecurityError
from haven.errors import (
    HavenError,
    InvalidModelFileError,
    InvalidModelNameError,
    ModelNotFoundError,
    UnsafeTemplateError,
)
from haven.models.hashing import sha256_file
from haven.models.store import ModelStore, snapshot
from tests.support.tiny_gguf import SSTI_GLOBALS, SSTI_MRO, truncated, with_tensor_count, write_tiny_gguf


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    # Header-only tiny files (not runnable): the trial load is tested with real ones in test_trial_load.py.
    return ModelStore(tmp_path / "models", trial_load_timeout=None)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "Tiny-Test-F32.gguf")


@pytest.fixture
def populated(store: ModelStore, tiny: Path) -> ModelStore:
    store.import_file(tiny, "existing:v1")
    return store


def test_import_stores_blob_and_manifest(store: ModelStore, tiny: Path) -> None:
    seen: list[tuple[int, int]] = []
    manifest = store.import_file(tiny, "Tiny:Test", progress=lambda done, total: seen.append((done, total)))
    sha = sha256_file(tiny)
    assert manifest.name == "tiny:test" and manifest.sha256 == sha and manifest.size == tiny.stat().st_size
    assert (manifest.architecture, manifest.parameter_count, manifest.quantization) == ("qwen2", 56, "F32")
    assert manifest.context_length == 256 and manifest.embedding_length == 8
    assert manifest.template_safe and manifest.template_warning is None
    assert manifest.special_tokens == {"<|im_start|>": 3, "<|im_end|>": 4}
    assert manifest.source == str(tiny.resolve())
    blob = store.root / "blobs" / f"sha256-{sha}"
    assert blob.read_bytes() == tiny.read_bytes()
    assert stat.S_IMODE(blob.stat().st_mode) == 0o644
    on_disk = json.loads((store.root / "manifests" / "tiny" / "test.json").read_text())
    assert on_disk["sha256"] == sha and on_disk["name"] == "tiny:test"
    assert seen[-1] == (manifest.size, manifest.size)
    assert sorted(p.name for p in (store.root / "blobs").iterdir()) == [f"sha256-{sha}"]  # no temp left


def test_get_list_exists_and_default_name(store: ModelStore, tiny: Path) -> None:
    store.import_file(tiny)  # name from the file name, tag latest
    store.import_file(tiny, "alpha")
    assert [m.name for m in store.list()] == ["alpha:latest", "tiny-test-f32:latest"]
    assert store.exists("ALPHA") and store.exists("alpha:latest") and not store.exists("alpha:other")
    assert store.get("alpha") == store.list()[0]
    assert len(list((store.root / "blobs").iterdir())) == 1  # deduplicated


def test_get_sees_every_change_to_a_manifest_it_read_before(store: ModelStore, tiny: Path) -> None:
    """Reads are cached by the manifest file's inode, size and mtime: a change by another store (another
    process), by hand in place, or a removal is seen by the next get."""
    from haven.errors import StoreError
    from haven.models.manifest import ModelDefaults

    store.import_file(tiny, "tiny:latest")
    assert store.get("tiny").defaults.empty and store.get("tiny") is store.get("tiny")  # unchanged: not re-read
    ModelStore(store.root, trial_load_timeout=None).set_defaults("tiny", ModelDefaults(system="Be brief."))
    assert store.get("tiny").defaults.system == "Be brief."
    path = next((store.root / "manifests").glob("*/*.json"))
    data = json.loads(path.read_text())
    data["defaults"]["system"] = "Be kind."
    with path.open("r+") as f:  # edited in place: the same inode
        f.write(json.dumps(data))
        f.truncate()
    os.utime(path, ns=(1, 1))  # an edit that also set the mtime back
    assert store.get("tiny").defaults.system == "Be kind."
    path.write_text("{ damaged")
    with pytest.raises(StoreError, match="damaged"):
        store.get("tiny")
    path.unlink()
    with pytest.raises(ModelNotFoundError):
        store.get("tiny")


def test_unknown_name_is_an_error_never_a_fallback(populated: ModelStore) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        populated.get("existing:v2")
    assert caught.value.message.startswith("model existing:v2 is not in the store")
    assert caught.value.status_code == 404


def test_link_import_shares_the_inode(store: ModelStore, tiny: Path) -> None:
    manifest = store.import_file(tiny, "linked", link=True)
    assert os.path.samefile(store.blob_path(manifest), tiny)
    assert manifest.sha256 == sha256_file(tiny)


def test_remove_keeps_shared_blobs(store: ModelStore, tiny: Path, tmp_path: Path) -> None:
    a = store.import_file(tiny, "a")
    store.import_file(tiny, "b")
    other = store.import_file(write_tiny_gguf(tmp_path / "other.gguf", seed=1), "c")
    store.remove("a")
    assert store.blob_path(a).exists() and not store.exists("a")
    store.remove("b")
    assert not store.blob_path(a).exists()
    assert not (store.root / "manifests" / "a").exists()
    assert [m.name for m in store.list()] == ["c:latest"] and store.blob_path(other).exists()
    with pytest.raises(ModelNotFoundError):
        store.remove("a")


def test_reimport_under_same_name_replaces_and_collects_old_blob(store: ModelStore, tiny: Path, tmp_path: Path) -> None:
    old = store.import_file(tiny, "m")
    new = store.import_file(write_tiny_gguf(tmp_path / "v2.gguf", seed=2), "m")
    assert store.get("m").sha256 == new.sha256 != old.sha256
    assert not store.blob_path(old).exists()


def test_verify_detects_a_damaged_blob(populated: ModelStore) -> None:
    assert populated.verify("existing:v1")
    blob = populated.blob_path(populated.get("existing:v1"))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert not populated.verify("existing:v1")
    blob.unlink()
    assert not populated.verify("existing:v1")


# --- bad input: one clear error, the store unchanged ------------------------------------------------


def _assert_refused(store: ModelStore, path: Path, error: type[HavenError], fragment: str, **kwargs: object) -> None:
    before = snapshot(store.root)
    with pytest.raises(error) as caught:
        store.import_file(path, **kwargs)  # type: ignore[arg-type]
    assert fragment in caught.value.message and "\n" not in caught.value.message
    assert snapshot(store.root) == before
    assert not [p for p in (store.root / "blobs").iterdir() if not p.name.startswith("sha256-")]


def test_non_gguf_file(populated: ModelStore, tmp_path: Path) -> None:
    bad = tmp_path / "photo.gguf"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    _assert_refused(populated, bad, InvalidModelFileError, "does not start with the GGUF magic bytes", name="x")


def test_truncated_gguf(populated: ModelStore, tiny: Path, tmp_path: Path) -> None:
    short = truncated(tiny, tmp_path / "short.gguf", tiny.stat().st_size - 100)
    _assert_refused(populated, short, InvalidModelFileError, "the file is truncated", name="x")


def test_absurd_tensor_count(populated: ModelStore, tiny: Path, tmp_path: Path) -> None:
    absurd = with_tensor_count(tiny, tmp_path / "absurd.gguf", 2**62)
    _assert_refused(populated, absurd, InvalidModelFileError, f"it claims {2**62:,} tensors", name="x")


def test_missing_file(populated: ModelStore, tmp_path: Path) -> None:
    _assert_refused(populated, tmp_path / "missing.gguf", InvalidModelFileError, "no such file", name="x")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("../escape", "'/' and '\\' are not allowed"),
        ("..", "'..' is not allowed"),
        ("a/b", "'/' and '\\' are not allowed"),
        ("evil\x00name", "control characters"),
        ("tab\tname", "control characters"),
    ],
)
def test_bad_names(populated: ModelStore, tiny: Path, name: str, fragment: str) -> None:
    _assert_refused(populated, tiny, InvalidModelNameError, fragment, name=name)


@pytest.mark.parametrize("payload", [SSTI_MRO, SSTI_GLOBALS])
def test_malicious_template_refused_then_sandboxed_when_allowed(
    populated: ModelStore, tmp_path: Path, payload: str
) -> None:
    evil = write_tiny_gguf(tmp_path / "evil.gguf", template=payload)
    _assert_refused(populated, evil, UnsafeTemplateError, "failed the safety scan", name="evil")
    _assert_refused(populated, evil, UnsafeTemplateError, "--allow-unsafe-template", name="evil")

    manifest = populated.import_file(evil, "evil", allow_unsafe_template=True)
    assert not manifest.template_safe and manifest.template_warning and "__" in manifest.template_warning
    assert manifest.chat_template == payload
    with pytest.raises(TemplateSecurityError) as caught:  # still only ever rendered in the sandbox
        ChatTemplate(manifest.chat_template).render([{"role": "user", "content": "hi"}])
    assert isinstance(caught.value.__cause__, SecurityError)


def test_failure_while_writing_manifest_leaves_store_unchanged(
    populated: ModelStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = write_tiny_gguf(tmp_path / "other.gguf", seed=5)
    before = snapshot(populated.root)

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("haven.models.store.fsync_dir", boom)
    with pytest.raises(OSError):
        populated.import_file(other, "other")
    assert snapshot(populated.root) == before


def _import_in_child(root: str, path: str, name: str) -> None:
    ModelStore(Path(root), trial_load_timeout=None).import_file(Path(path), name)


def test_concurrent_imports_from_two_processes(store: ModelStore, tiny: Path, tmp_path: Path) -> None:
    second = write_tiny_gguf(tmp_path / "second.gguf", seed=9)
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_import_in_child, args=(str(store.root), str(p), n))
        for p, n in ((tiny, "one"), (second, "two"), (tiny, "three"))
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert [m.name for m in store.list()] == ["one:latest", "three:latest", "two:latest"]
    assert len(list((store.root / "blobs").iterdir())) == 2


def test_factory_model_imports(store: ModelStore, make_test_model: Callable[..., Path]) -> None:
    manifest = store.import_file(make_test_model(template="llama3"), "factory:llama3")
    assert manifest.template_safe and manifest.vocab_size == 1280
    assert manifest.parameter_count == 156224


def test_link_falls_back_to_copy_across_filesystems(
    store: ModelStore, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(src: object, dst: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("haven.models.store.os.link", cross_device)
    manifest = store.import_file(tiny, "copied", link=True)
    blob = store.blob_path(manifest)
    assert not os.path.samefile(blob, tiny) and blob.read_bytes() == tiny.read_bytes()
    assert manifest.sha256 == sha256_file(tiny)


def test_model_defaults_round_trip_through_the_manifest(store: ModelStore, tiny: Path) -> None:
    from haven.models.manifest import Manifest, ModelDefaults

    store.import_file(tiny, "tiny:latest")
    assert store.get("tiny").defaults.empty
    defaults = ModelDefaults(system="Be brief.", stop=("###",), parameters={"temperature": 0.6, "num_ctx": 2048})
    store.set_defaults("tiny", defaults)
    again = store.get("tiny")
    assert again.defaults == defaults
    assert Manifest.from_json(again.to_json()).defaults.parameters == {"temperature": 0.6, "num_ctx": 2048}


def test_model_defaults_refuse_unknown_or_mistyped_parameters() -> None:
    from haven.models.manifest import ModelDefaults

    with pytest.raises(ValueError, match="unknown model parameter 'temprature'"):
        ModelDefaults(parameters={"temprature": 0.6})
    with pytest.raises(ValueError, match="must be a number"):
        ModelDefaults(parameters={"top_k": "40"})
