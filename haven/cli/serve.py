"""``haven serve``: run the HTTP server (OpenAI- and Ollama-compatible APIs) with uvicorn.

Every flag is a setting (derived from :class:`~haven.settings.Settings` by
:mod:`haven.cli.settings_flags`), so ``--parallel 2`` and ``HAVEN_PARALLEL=2`` mean the same. The
server refuses to start on a non-loopback address without an API key, and installs the egress guard
(:mod:`haven.egress`) before it loads anything.
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
    "itl_target_ms",
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
    "egress",
    "egress_allow",
    "redact",
    "model_import_dirs",  # issue 15: the admin page's import from a server path
    # issue 11: rate limits and slow-client protection
    "rate_limit_requests_per_minute",
    "rate_limit_tokens_per_minute",
    "max_generations_per_client",
    "request_body_timeout_seconds",
    "header_timeout_seconds",
    "keep_alive_timeout_seconds",
    "max_connections",
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
        from haven.chat.upstreams import UpstreamsFile, egress_destinations
        from haven.egress.setup import guard_process
        from haven.egress.telemetry import disable_dependency_telemetry

        settings = settings_from_options(options)
        disable_dependency_telemetry()
        upstreams = UpstreamsFile.load(settings.home).upstreams  # a broken file stops the start with one line
        # First of all, before the server's libraries are even imported: from here on no connection leaves the
        # machine unless the policy allows it.
        guard_process(settings, configured=egress_destinations(upstreams))

        import uvicorn

        from haven.server.app import create_app
        from haven.server.auth import check_bind_allowed
        from haven.server.http_protocol import uvicorn_protocol
        from haven.server.logging import configure_logging
        from haven.server.security import check_api_key_strength

        check_bind_allowed(settings)  # before anything is loaded or bound
        check_api_key_strength(settings)
        configure_logging(settings)
        app = create_app(settings)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,  # Haven's own request log (haven.server.logging) replaces uvicorn's
            timeout_graceful_shutdown=5,
            loop="asyncio",  # not uvloop: its sockets bypass the audit hooks the egress guard is built on
            # Slow-client protection (issue 11): idle keep-alive cap, header deadline, connection cap
            # (uvicorn answers 503 beyond it), bounded header size.
            timeout_keep_alive=int(max(1, settings.keep_alive_timeout_seconds)),
            http=uvicorn_protocol(settings.header_timeout_seconds),
            limit_concurrency=settings.max_connections,
            h11_max_incomplete_event_size=64 * 1024,
        )

    group.add_command(serve)
