"""Remote upstreams in configuration: ``HAVEN_HOME/upstreams.yaml``, read and written atomically.

Each upstream is an OpenAI-compatible server Haven forwards chats to (vLLM, SGLang, llama-server, another
Haven, any ``openai-compatible`` one): its base URL, kind, the *name* of the environment variable that holds
its API key (the key itself is never stored), the models it serves (pinned, or listed from its
``/v1/models``), timeouts and a routing weight. The file::

    upstreams:
      - name: gpu1
        url: http://10.0.0.5:8000/v1
        kind: vllm
        api_key_env: GPU1_KEY
        models: [qwen2.5-72b]      # optional: pinned; otherwise listed from the upstream
        weight: 2
        connect_timeout: 3
        read_timeout: 120
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from haven.errors import ConfigurationError

UpstreamKind = Literal["vllm", "sglang", "llama-server", "haven", "openai-compatible"]
KINDS: tuple[str, ...] = ("vllm", "sglang", "llama-server", "haven", "openai-compatible")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
FILE_NAME = "upstreams.yaml"


@dataclass(frozen=True)
class Upstream:
    name: str
    url: str
    """Base URL ending in /v1 (the OpenAI API root)."""
    kind: UpstreamKind = "openai-compatible"
    api_key_env: str | None = None
    models: tuple[str, ...] = ()
    """Pinned model names; empty = ask the upstream's /v1/models."""
    weight: float = 1.0
    connect_timeout: float = 3.0
    read_timeout: float = 120.0
    """Longest silence between two streamed bytes (a hung upstream is cut off after this)."""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigurationError(f"upstream name {self.name!r} must be lower-case letters, digits, - or _")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"upstream {self.name}: url {self.url!r} must be http(s)://host[:port]/v1")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ConfigurationError(f"upstream {self.name}: put credentials in api_key_env, not in the url")
        if self.kind not in KINDS:
            raise ConfigurationError(f"upstream {self.name}: kind must be one of {', '.join(KINDS)}")
        if self.api_key_env is not None and not _ENV.fullmatch(self.api_key_env):
            raise ConfigurationError(f"upstream {self.name}: api_key_env {self.api_key_env!r} is not a variable name")
        if not 0 < self.weight <= 1000:
            raise ConfigurationError(f"upstream {self.name}: weight must be in (0, 1000]")
        if not (0 < self.connect_timeout <= 60 and 0 < self.read_timeout <= 3600):
            raise ConfigurationError(f"upstream {self.name}: timeouts must be in (0, 60] and (0, 3600] seconds")

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def destination(self) -> str:
        """``host:port`` as the egress allowlist spells it."""
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
        return f"{host}:{port}"

    def api_key(self, environ: dict[str, str] | None = None) -> str | None:
        if self.api_key_env is None:
            return None
        env = os.environ if environ is None else environ
        value = env.get(self.api_key_env)
        if not value:
            raise ConfigurationError(f"upstream {self.name}: environment variable {self.api_key_env} is not set")
        return value

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["models"] = list(self.models)
        return {k: v for k, v in data.items() if v not in (None, [], ())}

    @classmethod
    def from_dict(cls, data: Any) -> Upstream:
        if not isinstance(data, dict):
            raise ConfigurationError("each upstream must be a mapping with at least name and url")
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ConfigurationError(f"upstream {data.get('name', '?')}: unknown field(s) {', '.join(sorted(unknown))}")
        if "name" not in data or "url" not in data:
            raise ConfigurationError("each upstream needs a name and a url")
        models = data.get("models") or ()
        if isinstance(models, str) or not all(isinstance(m, str) for m in models):
            raise ConfigurationError(f"upstream {data['name']}: models must be a list of names")
        try:
            return cls(**{**data, "models": tuple(models)})
        except TypeError as exc:
            raise ConfigurationError(f"upstream {data['name']}: {exc}") from None


@dataclass
class UpstreamsFile:
    path: Path
    upstreams: list[Upstream] = field(default_factory=list)

    @classmethod
    def load(cls, home: Path) -> UpstreamsFile:
        path = home / FILE_NAME
        if not path.exists():
            return cls(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{path} is not valid YAML ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("upstreams", []), list):
            raise ConfigurationError(f"{path} must hold a mapping with an `upstreams:` list")
        upstreams = [Upstream.from_dict(item) for item in data.get("upstreams", [])]
        names = [u.name for u in upstreams]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigurationError(f"{path}: upstream name(s) used twice: {', '.join(duplicates)}")
        return cls(path, upstreams)

    def get(self, name: str) -> Upstream:
        for upstream in self.upstreams:
            if upstream.name == name:
                return upstream
        raise ConfigurationError(f"no upstream named {name!r} (see `haven upstreams list`)")

    def add(self, upstream: Upstream) -> None:
        if any(u.name == upstream.name for u in self.upstreams):
            raise ConfigurationError(f"an upstream named {upstream.name!r} exists; remove it first")
        self.upstreams.append(upstream)

    def remove(self, name: str) -> None:
        self.upstreams.remove(self.get(name))

    def save(self) -> None:
        """Atomically (temp file + rename): a crash never leaves half a configuration."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump({"upstreams": [u.to_dict() for u in self.upstreams]}, sort_keys=False,
                              allow_unicode=True)
        fd, temp = tempfile.mkstemp(prefix=".upstreams-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def egress_destinations(upstreams: Sequence[Upstream]) -> list[str]:
    """What HAVEN_EGRESS_ALLOW must contain for these upstreams to be reachable."""
    return [u.destination for u in upstreams]
