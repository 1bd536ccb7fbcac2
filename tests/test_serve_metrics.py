"""genrt.serve.metrics: one registry per app, engine figures read at scrape time (zeros while loading)."""
from __future__ import annotations

import pytest

pytest.importorskip("prometheus_client")

from genrt.serve.metrics import Metrics  # noqa: E402


def test_engine_figures_and_request_counts():
    stats = {"queued": 3, "active_requests": 2, "active_rows": 8, "tokens_generated": 120, "steps": 40,
             "requests_finished": 7}
    metrics = Metrics(lambda: stats)
    metrics.observe("/v1/poems", 200, 0.2)
    metrics.observe("/v1/poems", 429, 0.001)
    text = metrics.text()[0].decode()
    for line in ("genrt_engine_queue_depth 3.0", "genrt_engine_active_rows 8.0",
                 "genrt_engine_generated_tokens_total 120.0", 'genrt_queue_full_total{endpoint="/v1/poems"} 1.0',
                 'genrt_http_requests_total{endpoint="/v1/poems",status="429"} 1.0'):
        assert line in text


def test_separate_apps_do_not_share_counts():
    first, second = Metrics(lambda: None), Metrics(lambda: None)
    first.observe("/healthz", 200, 0.01)
    assert "genrt_http_requests_total{" not in second.text()[0].decode()
    assert "genrt_engine_queue_depth 0.0" in second.text()[0].decode()
