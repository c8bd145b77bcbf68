"""A loopback stand-in for the Hugging Face hub, serving files the way the real hub does.

* ``HEAD/GET /{owner}/{repo}/resolve/{rev}/{file}`` → ``302`` to ``/cdn/{sha256}`` carrying
  ``X-Linked-Etag: "<sha256>"`` and ``X-Linked-Size`` (as huggingface.co does for LFS files);
* ``GET /cdn/{sha256}`` → the bytes, honouring ``Range: bytes=N-`` with ``206`` + ``Content-Range``
  (and ``If-Range``: a different ETag gets the whole file with ``200``);
* ``GET /api/models/{owner}/{repo}/tree/{rev}`` → the JSON list with ``lfs.oid`` / ``lfs.size``.

Failure modes, set on the instance: ``cut_after`` (list: the next GETs of file bytes send only that
many bytes and then drop the connection), ``corrupt`` (serve different bytes than the published hash),
``ignore_range`` (always 200), ``cdn_etag`` (the byte server's ETag), ``token`` (require
``Authorization: Bearer <token>``), ``stall_after`` (send that many bytes, then hang until
``release``); both leave shorter bodies alone. Every request is recorded in ``requests`` as
``(method, path, headers)`` so tests can prove a pull resumed with Range.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class HubFile:
    repo: str
    path: str
    data: bytes
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.data).hexdigest()


class FakeHub:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str], HubFile] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.cut_after: list[int] = []
        self.corrupt = False
        self.ignore_range = False
        self.token: str | None = None
        self.cdn_etag: str | None = None  # the CDN's ETag (default: the quoted sha256, as for LFS files)
        self.stall_after: int | None = None  # send that many bytes of a body, then hang until `release` is set
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, repo: str, path: str, data: bytes | Path) -> HubFile:
        blob = HubFile(repo, path, data.read_bytes() if isinstance(data, Path) else data)
        self.files[(repo, path)] = blob
        return blob

    def route(self, handler: Any, parts: list[str], head: bool) -> bool:
        """Extra routes of a subclass (see tests/support/fake_ollama_registry.py); True when handled."""
        return False

    def byte_requests(self) -> list[dict[str, str]]:
        """Headers of every GET for file bytes, in order."""
        return [headers for method, path, headers in self.requests if method == "GET" and path.startswith("/cdn/")]

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    # --- the HTTP side ----------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _send(self, status: int, headers: dict[str, str], body: bytes = b"", head: bool = False) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key != "Content-Length":
                        self.send_header(key, value)
                self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
                self.end_headers()
                if not head and body:
                    self.wfile.write(body)

            def _serve(self, head: bool) -> None:
                with hub._lock:
                    hub.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                if hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
                    self._send(401, {"Content-Type": "text/plain"}, b"unauthorized", head)
                    return
                path = self.path.split("?", 1)[0]
                parts = path.strip("/").split("/")
                if len(parts) >= 6 and parts[0] == "api" and parts[1] == "models" and parts[4] == "tree":
                    self._tree(f"{parts[2]}/{parts[3]}", head)
                elif len(parts) >= 5 and parts[2] == "resolve":
                    self._resolve(f"{parts[0]}/{parts[1]}", "/".join(parts[4:]), head)
                elif len(parts) == 2 and parts[0] == "cdn":
                    self._bytes(parts[1], head)
                elif not hub.route(self, parts, head):
                    self._send(404, {"Content-Type": "text/plain"}, b"not found", head)

            def _tree(self, repo: str, head: bool) -> None:
                entries = [
                    {"type": "file", "path": f.path, "size": len(f.data), "lfs": {"oid": f.sha256, "size": len(f.data)}}
                    for (r, _), f in hub.files.items()
                    if r == repo
                ]
                if not entries:
                    self._send(404, {"Content-Type": "application/json"}, b'{"error":"Repository not found"}', head)
                    return
                self._send(200, {"Content-Type": "application/json"}, json.dumps(entries).encode(), head)

            def _resolve(self, repo: str, filename: str, head: bool) -> None:
                blob = hub.files.get((repo, filename))
                if blob is None:
                    self._send(404, {"Content-Type": "text/plain"}, b"Entry not found", head)
                    return
                headers = {
                    "Location": f"/cdn/{blob.sha256}",
                    "X-Linked-Etag": f'"{blob.sha256}"',
                    "X-Linked-Size": str(len(blob.data)),
                    "ETag": f'"{blob.sha256}"',
                }
                self._send(302, headers, b"", head)

            def _bytes(self, sha: str, head: bool) -> None:
                blob = next((f for f in hub.files.values() if f.sha256 == sha), None)
                if blob is None:
                    self._send(404, {"Content-Type": "text/plain"}, b"no such blob", head)
                    return
                data = blob.data
                if hub.corrupt:
                    data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
                start = 0
                range_header = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                etag = hub.cdn_etag or f'"{blob.sha256}"'
                if range_header and not hub.ignore_range and (if_range is None or if_range == etag):
                    start = int(range_header.removeprefix("bytes=").split("-", 1)[0])
                if start >= len(data) and start:
                    self._send(416, {"Content-Range": f"bytes */{len(data)}"}, b"", head)
                    return
                body = data[start:]
                headers = {"ETag": etag, "Accept-Ranges": "bytes", "Content-Length": str(len(body))}
                status = 200
                if start:
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                with hub._lock:
                    # Bodies no longer than the cut (an Ollama params layer) are sent whole and keep the cut.
                    cut = hub.cut_after.pop(0) if hub.cut_after and not head and len(body) > hub.cut_after[0] else None
                if hub.stall_after is not None and not head and len(body) > hub.stall_after:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(body[: hub.stall_after])
                    self.wfile.flush()
                    hub.release.wait(30)  # a server that stops sending without closing
                    self.close_connection = True
                    return
                if cut is None:
                    self._send(status, headers, body, head)
                    return
                # Promise the whole body, send part of it, then drop the connection mid-transfer.
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True

        return Handler
