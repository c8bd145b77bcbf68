"""The manifest: a small JSON record naming one model and describing its blob (``manifests/<name>/<tag>.json``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MANIFEST_SCHEMA = 1


@dataclass(frozen=True)
class Manifest:
    name: str
    """Normalised ``name:tag``."""
    sha256: str
    size: int
    architecture: str
    parameter_count: int
    quantization: str
    context_length: int | None
    embedding_length: int | None
    chat_template: str | None
    template_safe: bool
    template_warning: str | None
    bos_token: str | None
    eos_token: str | None
    special_tokens: dict[str, int]
    modified: datetime
    source: str
    """Where the blob came from: an absolute path or an ``hf://`` reference."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Every GGUF metadata value; arrays longer than 16 elements are summarised as {array_of, length}."""
    block_count: int | None = None
    vocab_size: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha256}"

    @property
    def modified_at(self) -> datetime:
        return self.modified

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["modified"] = self.modified.isoformat()
        data["schema"] = MANIFEST_SCHEMA
        return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data.pop("schema", None)
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        modified = datetime.fromisoformat(values["modified"])
        values["modified"] = modified if modified.tzinfo else modified.replace(tzinfo=UTC)
        return cls(**values)
