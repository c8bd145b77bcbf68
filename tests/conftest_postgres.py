"""A throwaway PostgreSQL server for storage tests, started from Debian's binaries.

``postgres_url`` (session scope) runs ``initdb`` into a temp dir and ``pg_ctl start`` listening
only on a unix socket in that dir (no TCP port to collide on), as the ``postgres`` user when the
tests run as root (initdb refuses root). Skipped with a clear reason when the binaries are absent.
Imported by ``tests/unit/conftest.py``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL binaries (initdb, pg_ctl) not found; `bash scripts/install-system-deps.sh` installs them"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'haven[postgres]')")
    user = None
    if os.geteuid() == 0:
        user = "postgres" if shutil.which("runuser") and _user_exists("postgres") else None
        if user is None:
            pytest.skip("running as root without a 'postgres' user: initdb refuses root")
    base = Path(tempfile.mkdtemp(prefix="haven-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if user:
        shutil.chown(base, user)
        shutil.chown(sock, user)
    run = lambda cmd: subprocess.run(_as_user(cmd, user), check=True, capture_output=True, text=True)  # noqa: E731
    try:
        run([str(bin_dir / "initdb"), "-D", str(data), "-U", "haven", "--auth=trust", "-E", "UTF8", "--no-sync"])
        run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-t",
                "60",
                "-l",
                str(base / "log"),
                "-o",
                f"-k {sock} -c listen_addresses='' -c fsync=off",
                "start",
            ]
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr or exc.stdout}")
    try:
        yield f"postgresql+psycopg://haven@/postgres?host={sock}"
    finally:
        subprocess.run(
            _as_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], user), capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
