"""Haven's settings: one pydantic-settings class, read from ``HAVEN_*`` environment variables.

Every field has a description and bounds; ``haven config`` prints them (secrets masked) and
the CLI derives its flags from them (see :mod:`haven.cli.settings_flags`). Code asks for
settings through :func:`get_settings` (cached) so tests can override them; nothing reads
the environment at import time.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _physical_cores() -> int:
    """Physical core count (llama.cpp decodes fastest with one thread per physical core)."""
    try:
        cores: set[tuple[str, str]] = set()
        physical_id = core_id = ""
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "physical id":
                    physical_id = value
                elif key == "core id":
                    core_id = value
                    cores.add((physical_id, core_id))
        if cores:
            return len(cores)
    except OSError:
        pass
    return max(1, os.cpu_count() or 1)


def _mask_url_password(url: str) -> str:
    """postgresql://user:secret@host/db → postgresql://user:********@host/db."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:********@{host}"


def default_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "haven"


class Settings(BaseSettings):
    """Effective configuration of a Haven installation and server."""

    model_config = SettingsConfigDict(env_prefix="HAVEN_", extra="ignore", validate_default=True)

    # --- where things live -------------------------------------------------------------
    home: Path = Field(
        default_factory=default_home,
        description="Data directory: model store, database, logs (HAVEN_HOME).",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of Haven's database; default is SQLite at HOME/haven.db. "
        "Use postgresql+psycopg://… for multi-instance deployments.",
    )

    # --- HTTP server ----------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="Address `haven serve` binds to. Loopback by default.")
    port: int = Field(default=8700, ge=1, le=65535, description="TCP port of `haven serve`.")
    api_key: SecretStr | None = Field(
        default=None,
        description="Bearer token clients must send. Required when binding to a non-loopback address.",
    )
    max_request_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, le=1024**3, description="Largest request body accepted (413 above)."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (none by default: same-origin only)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    log_json: bool = Field(default=False, description="Write request logs as JSON lines (never message content).")

    # --- models and engine -------------------------------------------------------------------
    default_model: str = Field(
        default="haven-demo:tiny", description="Model `haven run` and `make serve` use when none is named."
    )
    context_length: int = Field(
        default=4096,
        ge=64,
        le=1_048_576,
        description="Context window (tokens) of each sequence slot (the KV cache holds parallel × this).",
    )
    parallel: int = Field(default=4, ge=1, le=256, description="Sequence slots per loaded model (concurrent requests).")
    batch_size: int = Field(default=512, ge=1, le=65536, description="Logical batch size (tokens per llama_decode).")
    prefill_chunk: int = Field(
        default=256,
        ge=1,
        le=65536,
        description="Prompt tokens a step adds in total while other requests are decoding (chunked prefill; "
        "bounds their inter-token latency).",
    )
    threads: int = Field(
        default_factory=_physical_cores, ge=1, le=1024, description="CPU threads for decoding; default physical cores."
    )
    prefix_cache: bool = Field(default=True, description="Reuse the KV cache of the longest matching prefix.")
    gpu_layers: int = Field(default=0, ge=-1, le=10_000, description="Layers offloaded to a GPU (-1: all).")
    memory_budget_bytes: int | None = Field(
        default=None, ge=1, description="Memory Haven may use for weights + KV cache; default: 90% of RAM."
    )
    keep_alive_seconds: float = Field(
        default=300.0, ge=0, le=7 * 24 * 3600, description="How long an idle model stays loaded (per-request override)."
    )
    max_loaded_models: int = Field(default=1, ge=1, le=64, description="Models kept loaded at once (LRU unload).")
    max_queue: int = Field(
        default=64, ge=0, le=100_000, description="Requests that may wait for a slot per model (429 above)."
    )
    max_tokens_limit: int = Field(
        default=32768, ge=1, le=1_048_576, description="Largest max_tokens a request may ask for."
    )

    # --- engine performance (issue 14) ---------------------------------------------------------
    speculative: Literal["off", "ngram"] = Field(
        default="ngram",
        description="Speculative decoding: ngram drafts from each request's own prompt and output (same output, "
        "faster on text that repeats its input); off disables it. Per-request override: speculative.",
    )
    speculative_draft_max: int = Field(
        default=8, ge=1, le=32, description="Most tokens drafted per request and step (speculative decoding)."
    )
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = Field(
        default="f16",
        description="KV cache element type for K and V: q8_0 halves its memory, q4_0 quarters it "
        "(quantized V needs flash attention).",
    )
    flash_attention: Literal["auto", "on", "off"] = Field(
        default="auto", description="llama.cpp flash attention: auto (on where supported), on, or off."
    )

    # --- model store / pulling ---------------------------------------------------------------
    hf_endpoint: str = Field(
        default="https://huggingface.co", description="Hugging Face hub (or mirror) used by `haven models pull`."
    )
    hf_token: SecretStr | None = Field(default=None, description="Optional hub token for gated or private repos.")
    download_timeout_seconds: float = Field(default=30.0, gt=0, le=3600, description="Network timeout for pulls.")
    allow_unsafe_templates: bool = Field(
        default=False, description="Accept models whose chat template fails the safety scan (still sandboxed)."
    )

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    # --- derived paths ---------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'haven.db'}"

    def masked(self) -> dict[str, Any]:
        """Effective settings as plain values, secrets replaced by '********' (or None)."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********"
            elif name == "database_url" and value:
                value = _mask_url_password(value)
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
