"""A loopback Ollama-compatible registry: manifests at ``/v2/{ns}/{model}/manifests/{tag}``, blobs at
``/v2/{ns}/{model}/blobs/sha256:{hex}`` redirected (307, as registry.ollama.ai does) to ``/cdn/{hex}``.

Built on :class:`tests.support.fake_hub.FakeHub`, so blob bytes get the same Range / cut / stall / corrupt
behaviour. ``add_model(name, tag, gguf, params=…, system=…)`` publishes a model; ``raw_manifests`` serves
any bytes as a manifest (non-JSON, bad digests, huge sizes); ``status`` answers every request with that
HTTP status; ``truncate_manifest`` promises more manifest bytes than it sends; ``redirect_to`` sends blob
redirects to another origin (to prove http redirects elsewhere are refused).
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.fake_hub import FakeHub, HubFile

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


class FakeOllamaRegistry(FakeHub):
    def __init__(self) -> None:
        super().__init__()
        self.manifests: dict[tuple[str, str], bytes] = {}
        self.status: int | None = None
        self.truncate_manifest = False
        self.redirect_to: str | None = None

    def blob(self, data: bytes) -> HubFile:
        return self.add("blobs", f"{len(self.files)}", data)

    def layer(self, media: str, data: bytes) -> dict[str, Any]:
        blob = self.blob(data)
        return {
            "mediaType": f"application/vnd.ollama.image.{media}",
            "digest": f"sha256:{blob.sha256}",
            "size": len(data),
        }

    def add_model(
        self,
        name: str,
        tag: str,
        gguf: bytes,
        *,
        params: dict[str, Any] | bytes | None = None,
        system: str | None = None,
        extra: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        layers = [self.layer("model", gguf)]
        if params is not None:
            layers.append(self.layer("params", params if isinstance(params, bytes) else json.dumps(params).encode()))
        if system is not None:
            layers.append(self.layer("system", system.encode()))
        layers.append(self.layer("template", b"{{ .Prompt }}"))
        layers.append(self.layer("license", b"Apache-2.0"))
        layers.extend(extra or [])
        manifest = {
            "schemaVersion": 2, "mediaType": MANIFEST_TYPE, "layers": layers,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": "sha256:" + "0" * 64, "size": 2},
        }  # fmt: skip
        path = name if "/" in name else f"library/{name}"
        self.manifests[(path, tag)] = json.dumps(manifest).encode()
        return manifest

    def route(self, handler: Any, parts: list[str], head: bool) -> bool:
        if self.status is not None:
            handler._send(self.status, {"Content-Type": "application/json"}, b'{"errors":[{"code":"X"}]}', head)
            return True
        if len(parts) == 5 and parts[0] == "v2" and parts[3] == "manifests":
            body = self.manifests.get((f"{parts[1]}/{parts[2]}", parts[4]))
            if body is None:
                handler._send(
                    404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', head
                )
            elif self.truncate_manifest:
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body[: len(body) // 2])
                handler.wfile.flush()
                handler.close_connection = True
            else:
                handler._send(200, {"Content-Type": MANIFEST_TYPE}, body, head)
            return True
        if len(parts) == 5 and parts[0] == "v2" and parts[3] == "blobs" and parts[4].startswith("sha256:"):
            sha = parts[4].removeprefix("sha256:")
            if not any(f.sha256 == sha for f in self.files.values()):
                handler._send(404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}', head)
                return True
            handler._send(307, {"Location": f"{self.redirect_to or ''}/cdn/{sha}"}, b"", head)
            return True
        return False
