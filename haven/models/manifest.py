"""The manifest: a small JSON record naming one model and describing its blob (``manifests/<name>/<tag>.json``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MANIFEST_SCHEMA = 1

# Ollama option names a model's defaults may set (the same names `/api/chat`'s ``options`` takes).
DEFAULT_PARAMETER_TYPES: dict[str, type | tuple[type, ...]] = {
    "temperature": (int, float), "top_p": (int, float), "top_k": int, "min_p": (int, float),
    "typical_p": (int, float), "repeat_penalty": (int, float), "repeat_last_n": int,
    "presence_penalty": (int, float), "frequency_penalty": (int, float), "seed": int, "num_predict": int,
    "num_ctx": int, "mirostat": int, "mirostat_tau": (int, float), "mirostat_eta": (int, float),
}


@dataclass(frozen=True)
class ModelDefaults:
    """What a model applies to requests that do not say otherwise (Ollama's Modelfile ``SYSTEM``,
    ``TEMPLATE``, ``PARAMETER``): set by ``/api/create``, an Ollama registry ``params`` layer, or
    ``haven models set``. A request's own value always wins; ``stop`` strings are added to a request's."""

    system: str | None = None
    template: str | None = None
    """A chat template replacing the GGUF's own (scanned like any template before it is stored)."""
    stop: tuple[str, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    """Ollama option names (see DEFAULT_PARAMETER_TYPES) → values."""

    def __post_init__(self) -> None:
        for key, value in self.parameters.items():
            expected = DEFAULT_PARAMETER_TYPES.get(key)
            if expected is None:
                known = ", ".join(sorted(DEFAULT_PARAMETER_TYPES))
                raise ValueError(f"unknown model parameter {key!r} (known: {known})")
            if isinstance(value, bool) or not isinstance(value, expected):
                raise ValueError(f"model parameter {key!r} must be a number, not {value!r}")

    @property
    def empty(self) -> bool:
        return self.system is None and self.template is None and not self.stop and not self.parameters

    def to_dict(self) -> dict[str, Any]:
        return {"system": self.system, "template": self.template, "stop": list(self.stop),
                "parameters": dict(self.parameters)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ModelDefaults:
        data = data or {}
        return cls(system=data.get("system"), template=data.get("template"), stop=tuple(data.get("stop") or ()),
                   parameters=dict(data.get("parameters") or {}))


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
    defaults: ModelDefaults = field(default_factory=ModelDefaults)
    """Request defaults of this model (system prompt, template, stop strings, sampling parameters)."""

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha256}"

    @property
    def modified_at(self) -> datetime:
        return self.modified

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["modified"] = self.modified.isoformat()
        data["defaults"] = self.defaults.to_dict()
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
        values["defaults"] = ModelDefaults.from_dict(values.get("defaults"))
        return cls(**values)
