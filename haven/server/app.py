"""The FastAPI application factory: wires settings, the model manager, routers and middleware.

``create_app(settings, engine_loader=..., store=...)`` builds a fresh app with no process-global state:
its ModelManager, metrics registry and settings live on ``app.state``. Tests pass a fake loader and
store; ``haven serve`` passes nothing and gets the real engine (:func:`haven.engine.engine.load_engine`)
and the model store under ``settings.home``. Besides the OpenAI (``/v1``) and Ollama (``/api``)
routers it serves ``/health`` (the process is up), ``/ready`` (the store is readable and the default
model is present) and ``/metrics`` (Prometheus).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from haven import __version__
from haven.accounts.shared_limits import DatabaseBuckets
from haven.chat.backend import ChatBackend
from haven.chat.local import LocalChatBackend
from haven.chat.routing import RoutingChatBackend, UpstreamPool
from haven.chat.upstreams import UpstreamsFile
from haven.engine.protocol import EngineLoader, ModelEngine
from haven.errors import HavenError
from haven.models.store import ModelStore
from haven.server.accounts import routes_admin as accounts_admin
from haven.server.accounts import routes_auth as accounts_auth
from haven.server.accounts import routes_conversations as accounts_conversations
from haven.server.accounts.context import AccountsContext
from haven.server.accounts.recording import ChatRecordingMiddleware
from haven.server.accounts.retention import retention_loop
from haven.server.auth import AuthMiddleware, check_bind_allowed, is_loopback
from haven.server.engine_config import engine_config
from haven.server.errors import install_error_handlers
from haven.server.json_body import add_body_components
from haven.server.limits import BodyLimitMiddleware
from haven.server.logging import RequestLogMiddleware
from haven.server.metrics import CONTENT_TYPE, ServerMetrics, UpstreamCollector
from haven.server.model_manager import ModelManager
from haven.server.openai.router import router as openai_router
from haven.server.ratelimit import Limits, RateLimitMiddleware
from haven.server.security import BrowserGuardMiddleware, check_api_key_strength, is_loopback_host
from haven.server.web import index_response, install_web_ui, wants_html
from haven.settings import Settings, get_settings

log = logging.getLogger("haven.server")


def default_loader(settings: Settings) -> EngineLoader:
    """The real llama.cpp engine, imported only when the server builds its app."""
    from haven.engine.engine import load_engine

    config = engine_config(settings)

    def load(path: str, *, name: str, sha256: str) -> ModelEngine:
        engine: ModelEngine = load_engine(path, name=name, sha256=sha256, config=config)
        return engine

    return load


def _upstream_pool(settings: Settings, accounts: AccountsContext, metrics: ServerMetrics) -> UpstreamPool | None:
    """The configured remote upstreams (HAVEN_HOME/upstreams.yaml), or None when there are none."""
    upstreams = UpstreamsFile.load(settings.home).upstreams
    if not upstreams:
        return None

    def redacted(model: str, counts: Mapping[str, int]) -> None:
        # Counts per type, never the values (issue 17).
        accounts.log.append_soon("redaction", details={"model": model, **{k.lower(): v for k, v in counts.items()}})

    # The metrics observe remote generations too: their tokens count in /metrics and the client's token bucket.
    return UpstreamPool.build(upstreams, redact=settings.redact != "off", on_redacted=redacted, observer=metrics)


def _report_egress_refusals(accounts: AccountsContext) -> None:
    """Refused outbound connections go to the security log (when `haven serve` installed the guard)."""
    from haven.egress import installed_guard

    guard = installed_guard()
    if guard is None:
        return

    def report(destination: str, event: str) -> None:
        accounts.log.append("egress_refused", details={"destination": destination, "via": event})

    guard.reporters.append(report)


def create_app(
    settings: Settings | None = None,
    *,
    engine_loader: EngineLoader | None = None,
    store: ModelStore | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    accounts = AccountsContext(settings)
    if not is_loopback(settings.host) and settings.api_key is None:  # issue 10: users may authenticate a public bind
        check_bind_allowed(settings, users_exist=accounts.has_users())
    else:
        check_bind_allowed(settings, users_exist=False)
    check_api_key_strength(settings)
    store = store if store is not None else ModelStore.from_settings(settings)
    loader = engine_loader if engine_loader is not None else default_loader(settings)
    manager = ModelManager(settings, store, loader)
    metrics = ServerMetrics(manager.stats)
    # The one chat pipeline every API uses (and the seam for accounts, conversations or a remote upstream).
    local = LocalChatBackend(manager, max_tokens_limit=settings.max_tokens_limit, observer=metrics)
    pool = _upstream_pool(settings, accounts, metrics)
    _report_egress_refusals(accounts)
    chat_backend: ChatBackend = local if pool is None else RoutingChatBackend(local, pool)
    if pool is not None:
        metrics.registry.register(UpstreamCollector(pool))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("haven %s serving on %s:%d", __version__, settings.host, settings.port)
        retention = asyncio.get_running_loop().create_task(retention_loop(accounts))
        if pool is not None:
            pool.start()  # health checks (the first one lists the upstreams' models) run in the background
        try:
            yield
        finally:
            retention.cancel()
            if pool is not None:
                await pool.close()
            await manager.close()
            accounts.close()

    app = FastAPI(
        title="Haven",
        version=__version__,
        description="Self-hosted AI assistant server with OpenAI- and Ollama-compatible APIs.",
        lifespan=lifespan,
    )
    _publish_body_components(app)
    # The manager exists before the lifespan runs so in-process tests (httpx.ASGITransport, which does
    # not run lifespans) get a working app; the lifespan only closes it.
    app.state.settings = settings
    app.state.model_manager = manager
    app.state.metrics = metrics
    app.state.chat_backend = chat_backend
    # Where /v1/responses keeps responses (a haven.server.openai.responses.ResponseStore); None: not kept.
    app.state.response_store = None
    app.state.accounts = accounts

    install_error_handlers(app)
    app.include_router(openai_router)
    ollama_router = _ollama_router()
    if ollama_router is not None:
        app.include_router(ollama_router)
    _add_probe_routes(app)
    for router in (accounts_auth.router, accounts_conversations.router, accounts_admin.router):
        app.include_router(router)
    install_web_ui(app)  # issue 15: the web chat UI at / (assets under /ui/)

    # Added innermost first: the request log sees every response, including 401s and 413s.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(ChatRecordingMiddleware, context=accounts)  # conversation_id + chat_request log lines
    app.add_middleware(AuthMiddleware, settings=settings, context=accounts)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(
        RateLimitMiddleware,
        limits=Limits(
            settings.rate_limit_requests_per_minute,
            settings.rate_limit_tokens_per_minute,
            settings.max_generations_per_client,
        ),
        body_timeout=settings.request_body_timeout_seconds,
        # Shared by every instance on the database (issue 16); this process's memory on SQLite.
        buckets=DatabaseBuckets(lambda: accounts.db) if settings.limits_in_database else None,
    )
    # Host/Origin/content-type checks come before authentication and any body is read (issue 11).
    app.add_middleware(
        BrowserGuardMiddleware, loopback_bind=is_loopback_host(settings.host), allowed_origins=settings.cors_origins
    )
    app.add_middleware(RequestLogMiddleware, metrics=metrics)
    return app


def _ollama_router() -> Any:
    try:
        from haven.server.ollama.router import router
    except ImportError:  # pragma: no cover - the Ollama API is part of every release
        log.warning("the Ollama-compatible API is not available in this build")
        return None
    return router


def _add_probe_routes(app: FastAPI) -> None:
    # Many tools check for an Ollama server by this exact text (GET or HEAD /) before anything else.
    # A browser (Accept: text/html) gets the web UI at the same address.
    @app.get("/", tags=["server"], summary="The web UI for browsers; liveness, as Ollama answers it, for the rest")
    async def root(request: Request) -> Response:
        return index_response(request) if wants_html(request) else PlainTextResponse("Ollama is running")

    @app.head("/", tags=["server"], summary="Liveness, as Ollama answers it (headers only)")
    async def root_head(request: Request) -> Response:
        return index_response(request) if wants_html(request) else PlainTextResponse("Ollama is running")

    @app.get("/health", tags=["server"], summary="Liveness: the process is serving")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/ready", tags=["server"], summary="Readiness: the store is readable and the default model present")
    async def ready(request: Request) -> Response:
        manager: ModelManager = request.app.state.model_manager
        settings: Settings = request.app.state.settings
        checks: dict[str, str] = {}
        try:
            manager.store.list()
            checks["store"] = "ok"
        except (OSError, HavenError) as exc:
            checks["store"] = f"unreadable: {getattr(exc, 'message', exc)}"
        loaded = {m.name for m in manager.loaded()}
        try:
            manifest = manager.store.get(settings.default_model)
            name = manifest.name
            checks["default_model"] = "loaded" if name in loaded else "present"
        except (OSError, HavenError) as exc:
            checks["default_model"] = f"missing: {getattr(exc, 'message', exc)}"
        ok = checks["store"] == "ok" and checks["default_model"] in ("loaded", "present")
        body = {"status": "ready" if ok else "not ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["server"], summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)


def _publish_body_components(app: FastAPI) -> None:
    """/openapi.json names the bodies that routes parse themselves (haven.server.json_body) as components."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_body_components(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
