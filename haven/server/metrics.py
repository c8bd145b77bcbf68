"""Prometheus metrics of one server app (``GET /metrics``).

Each app gets its own ``CollectorRegistry`` (no process-global state, so tests can build many apps).
Request counters and latency are recorded by the request-log middleware, token counts, time to first
token and decode speed by :mod:`haven.server.generation`; queue depth, slots in use and cache-hit
tokens are read from the loaded engines at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from haven.engine.protocol import EngineStats

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

    def render(self) -> bytes:
        return generate_latest(self.registry)
