"""The pull transfer's guards in isolation: which redirects are followed, the disk-space reserve."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from haven.errors import DownloadError
from haven.models.transfer import check_disk_space, redirect_guard


def _redirect(origin: str, location: str) -> httpx.Response:
    return httpx.Response(302, headers={"location": location}, request=httpx.Request("GET", origin + "/v2/x"))


@pytest.mark.parametrize(
    ("endpoint", "location", "allowed"),
    [
        ("https://registry.ollama.ai", "https://dd20bb891979d25aebc8bec07b2b3bbc.r2.cloudflarestorage.com/x", True),
        ("https://huggingface.co", "/cdn/abc", True),  # relative: same origin
        ("https://huggingface.co", "http://cdn-lfs.huggingface.co/x", False),  # a downgrade
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/cdn/x", True),  # an http endpoint within itself
        ("http://127.0.0.1:8080", "http://127.0.0.1:9090/cdn/x", False),  # another port is another origin
        ("http://127.0.0.1:8080", "https://mirror.example/x", True),
        ("https://registry.ollama.ai", "ftp://registry.ollama.ai/x", False),
        ("https://registry.ollama.ai", "file:///etc/passwd", False),
    ],
)
def test_redirects_only_to_https_or_the_endpoints_own_origin(endpoint: str, location: str, allowed: bool) -> None:
    guard = redirect_guard(endpoint)
    response = _redirect(endpoint, location)
    if allowed:
        guard(response)
    else:
        with pytest.raises(DownloadError, match="only https redirects are followed"):
            guard(response)


def test_non_redirects_pass() -> None:
    redirect_guard("https://x.example")(httpx.Response(200, request=httpx.Request("GET", "http://other.example/")))


def test_disk_space_keeps_the_reserve(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    check_disk_space(tmp_path, 1, 0, "m")
    with pytest.raises(DownloadError, match=r"not enough disk space for m: it needs 1 B more, .* are free in .* keeps"):
        check_disk_space(tmp_path, 1, free + (1 << 30), "m")  # the byte fits, the reserve does not
