"""Prometheus text metrics (prometheus_client), one registry per app so that several apps in one process (tests)
never share counts. Engine figures are read from PoemEngine.stats() when /metrics is scraped.

With `--workers N` each worker counts its own requests (a scrape reaches one worker); prometheus_client's
multiprocess mode would sum them but keeps its files on disk, and the service writes nothing to disk.
"""
from __future__ import annotations

from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class EngineCollector:
    """Queue depth, active rows and requests, generated tokens and steps, from a stats() callable (None while the
    models load)."""

    def __init__(self, stats: Callable[[], dict | None]):
        self.stats = stats

    def collect(self):
        stats = self.stats() or {}
        for name, kind, key, text in (
                ("genrt_engine_queue_depth", GaugeMetricFamily, "queued", "poem requests waiting for decoder rows"),
                ("genrt_engine_active_requests", GaugeMetricFamily, "active_requests", "poem requests decoding"),
                ("genrt_engine_active_rows", GaugeMetricFamily, "active_rows", "decoder rows in use"),
                ("genrt_engine_generated_tokens", CounterMetricFamily, "tokens_generated", "tokens generated"),
                ("genrt_engine_steps", CounterMetricFamily, "steps", "decoder steps"),
                ("genrt_engine_requests_finished", CounterMetricFamily, "requests_finished",
                 "poem requests finished (any outcome)")):
            yield kind(name, text, value=stats.get(key, 0))
        if "processes" in stats:                # engine processes (EnginePool): how many live, how many replaced
            yield GaugeMetricFamily("genrt_engine_processes_alive", "poem engine processes running",
                                    value=stats["processes_alive"])
            yield CounterMetricFamily("genrt_engine_restarts", "poem engine processes started in place of one that "
                                      "stopped", value=stats["restarts"])

    def describe(self):
        return []                      # values exist only at scrape time


class Metrics:
    def __init__(self, engine_stats: Callable[[], dict | None]):
        self.registry = CollectorRegistry()
        self.requests = Counter("genrt_http_requests", "HTTP requests answered", ("endpoint", "status"),
                                registry=self.registry)
        self.latency = Histogram("genrt_http_request_seconds", "time from request to the last byte sent",
                                 ("endpoint",), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_full = Counter("genrt_queue_full", "requests refused with 429", ("endpoint",),
                                  registry=self.registry)
        self.stream_ends = Counter("genrt_stream_errors", "streams that had started (status 200) and ended with an "
                                   "error event or a client that left, by kind", ("endpoint", "kind"),
                                   registry=self.registry)
        self.registry.register(EngineCollector(engine_stats))

    def observe(self, endpoint: str, status: int, seconds: float, stream_end: str | None = None) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        if stream_end is not None:
            self.stream_ends.labels(endpoint, stream_end).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status == 429:
            self.queue_full.labels(endpoint).inc()

    def text(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
