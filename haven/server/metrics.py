"""Prometheus metrics of one server app (``GET /metrics``).

Each app gets its own ``CollectorRegistry`` (no process-global state, so tests can build many apps).
Request counters and latency are recorded by the request-log middleware, token counts, time to first
token and decode speed by the chat layer (through the observer hooks below); queue depth, slots in use and cache-hit
tokens are read from the loaded engines at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from haven.chat.backend import Usage
from haven.chat.routing import UpstreamPool
from haven.engine.protocol import EngineStats
from haven.server.ratelimit import charge_generated_tokens

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _EngineCollector(Collector):
    """Gauges read from the engines when Prometheus scrapes, so they are never stale."""

    def __init__(self, stats: Callable[[], Mapping[str, EngineStats]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        queue = GaugeMetricFamily("haven_queue_depth", "Requests waiting for a slot.", labels=["model"])
        slots = GaugeMetricFamily("haven_slots_in_use", "Sequence slots generating now.", labels=["model"])
        total = GaugeMetricFamily("haven_slots_total", "Sequence slots of the loaded model.", labels=["model"])
        cached = GaugeMetricFamily(
            "haven_cache_hit_tokens", "Prompt tokens served from the prefix cache since load.", labels=["model"]
        )
        loaded = GaugeMetricFamily("haven_models_loaded", "Models loaded now.")
        # Speculative decoding and KV cache (issue 14): acceptance rate = accepted / drafted.
        drafted = GaugeMetricFamily(
            "haven_speculative_drafted_tokens", "Tokens drafted and verified since load.", labels=["model"]
        )
        accepted = GaugeMetricFamily(
            "haven_speculative_accepted_tokens", "Drafted tokens the model accepted since load.", labels=["model"]
        )
        kv_bytes = GaugeMetricFamily(
            "haven_kv_cache_bytes_per_slot", "KV cache bytes of one slot at full context.", labels=["model", "type"]
        )
        stats = dict(self._stats())
        for model, s in stats.items():
            queue.add_metric([model], s.queue_depth)
            slots.add_metric([model], s.slots_in_use)
            total.add_metric([model], s.slots_total)
            cached.add_metric([model], s.cached_tokens_total)
            drafted.add_metric([model], s.drafted_tokens_total)
            accepted.add_metric([model], s.accepted_tokens_total)
            kv_bytes.add_metric([model, s.kv_cache_type], s.kv_bytes_per_slot)
        loaded.add_metric([], len(stats))
        yield from (queue, slots, total, cached, loaded, drafted, accepted, kv_bytes)


class UpstreamCollector(Collector):
    """Per-upstream requests, errors, outstanding requests, time to first token and breaker state."""

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        labels = ["upstream"]
        requests = CounterMetricFamily("haven_upstream_requests", "Chats sent to the upstream.", labels=labels)
        errors = CounterMetricFamily("haven_upstream_errors", "Chats that failed before their first byte.",
                                     labels=labels)
        first = CounterMetricFamily("haven_upstream_first_event_seconds",
                                    "Summed time to the first event (divide by requests for the mean TTFT).",
                                    labels=labels)
        outstanding = GaugeMetricFamily("haven_upstream_outstanding", "Chats in flight to the upstream now.",
                                        labels=labels)
        healthy = GaugeMetricFamily("haven_upstream_healthy",
                                    "1 when the breaker is closed, 0.5 half-open, 0 open.", labels=labels)
        for m in self._pool.members:
            requests.add_metric([m.name], m.requests)
            errors.add_metric([m.name], m.errors)
            first.add_metric([m.name], m.first_event_seconds)
            outstanding.add_metric([m.name], m.backend.outstanding)
            healthy.add_metric([m.name], {"closed": 1.0, "half-open": 0.5, "open": 0.0}[m.breaker.state])
        yield from (requests, errors, first, outstanding, healthy)


class ServerMetrics:
    def __init__(self, engine_stats: Callable[[], Mapping[str, EngineStats]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "haven_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "haven_http_request_duration_seconds",
            "Time until the response was complete.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "haven_prompt_tokens", "Prompt tokens processed.", ["model"], registry=self.registry
        )
        self.completion_tokens = Counter(
            "haven_completion_tokens", "Tokens generated.", ["model"], registry=self.registry
        )
        self.cached_tokens = Counter(
            "haven_prompt_cached_tokens",
            "Prompt tokens reused from the prefix cache.",
            ["model"],
            registry=self.registry,
        )
        self.generations = Counter(
            "haven_generations", "Generations by finish reason.", ["model", "reason"], registry=self.registry
        )
        self.ttft = Histogram(
            "haven_time_to_first_token_seconds",
            "Time from submit to the first generated token.",
            ["model"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.tokens_per_second = Histogram(
            "haven_decode_tokens_per_second",
            "Decode speed of finished generations.",
            ["model"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
            registry=self.registry,
        )
        if engine_stats is not None:
            self.registry.register(_EngineCollector(engine_stats))

    # --- the chat layer's GenerationObserver hooks ---------------------------------------------------

    def first_token(self, model: str, seconds: float) -> None:
        self.ttft.labels(model).observe(seconds)

    def finished(self, model: str, reason: str, usage: Usage, decode_seconds: float | None) -> None:
        # The one hook every finished local generation passes: its tokens also go to the client's token
        # bucket (issue 11's per-client token rate limit; a no-op outside a rate-limited request).
        charge_generated_tokens(usage.completion_tokens)
        self.generations.labels(model, reason).inc()
        self.prompt_tokens.labels(model).inc(usage.prompt_tokens)
        self.completion_tokens.labels(model).inc(usage.completion_tokens)
        self.cached_tokens.labels(model).inc(usage.cached_tokens)
        if decode_seconds and usage.completion_tokens > 1:
            self.tokens_per_second.labels(model).observe(usage.completion_tokens / decode_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
