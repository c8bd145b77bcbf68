"""Streaming sha256 of files, optionally copying while hashing (one read of a multi-GB model, not two)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

CHUNK = 4 << 20  # 4 MiB: large enough that Python overhead is negligible next to the disk
Progress = Callable[[int, int], None]


def hash_stream(src: BinaryIO, total: int, progress: Progress | None = None, dst: BinaryIO | None = None) -> str:
    """sha256 hex of everything left in ``src``; bytes also go to ``dst`` when given; progress(done, total)."""
    digest = hashlib.sha256()
    done = 0
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        if dst is not None:
            dst.write(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, max(total, done))
    return digest.hexdigest()


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    with open(path, "rb") as fh:
        return hash_stream(fh, os.fstat(fh.fileno()).st_size, progress)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX: the directory entry lives in the directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
