"""``haven serve``: run the HTTP server (OpenAI- and Ollama-compatible APIs) with uvicorn.

Every flag is a setting (derived from :class:`~haven.settings.Settings` by
:mod:`haven.cli.settings_flags`), so ``--parallel 2`` and ``HAVEN_PARALLEL=2`` mean the same. The
server refuses to start on a non-loopback address without an API key.
"""

from __future__ import annotations

from typing import Any

import click
import typer

from haven.cli.settings_flags import add_settings_options, settings_from_options

SERVE_SETTINGS = [
    "host",
    "port",
    "api_key",
    "home",
    "default_model",
    "context_length",
    "parallel",
    "batch_size",
    "prefill_chunk",
    "threads",
    "gpu_layers",
    "prefix_cache",
    "memory_budget_bytes",
    "keep_alive_seconds",
    "max_loaded_models",
    "max_queue",
    "max_tokens_limit",
    "max_request_bytes",
    "cors_origins",
    "log_level",
    "log_json",
    # issue 14: speculative decoding and the KV cache
    "speculative",
    "speculative_draft_max",
    "kv_cache_type",
    "flash_attention",
]


def register(app: typer.Typer) -> None:
    """Typer-side commands: none (run, ps and stop live in :mod:`haven.cli.client`)."""


def register_click(group: click.Group) -> None:
    """Commands built with click directly (``serve``, whose flags come from Settings)."""

    @add_settings_options(SERVE_SETTINGS)
    @click.command("serve")
    def serve(**options: Any) -> None:
        """Serve the OpenAI-compatible (/v1) and Ollama-compatible (/api) APIs."""
        import uvicorn

        from haven.server.app import create_app
        from haven.server.auth import check_bind_allowed
        from haven.server.logging import configure_logging

        settings = settings_from_options(options)
        check_bind_allowed(settings)  # before anything is loaded or bound
        configure_logging(settings)
        app = create_app(settings)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,  # Haven's own request log (haven.server.logging) replaces uvicorn's
            timeout_graceful_shutdown=5,
        )

    group.add_command(serve)
