"""benchmarks.serve_load: the report from its results (the phases themselves run servers: a benchmark, not a test)."""
import pytest

pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from benchmarks import serve_load  # noqa: E402


def _tally(**extra) -> dict:
    return {"seconds": 20.0, "answered": 100, "requests_per_s": 5.0, "chars_per_s": 200.0, "status": {"200": 100},
            "errors_other_than_429": 0, "mismatched": 0, "p50_ms": 400.0, "p99_ms": 900.0, "by_kind": {}, **extra}


def test_the_report_shows_each_layout_against_the_direct_engine():
    result = {"machine": {"cpu": "Test CPU", "cores": 2, "python": "3.11", "onnxruntime": "1.32", "fastapi": "0.1",
                          "uvicorn": "0.5", "date": "2026-01-01"},
              "clients": 64, "commands": ["python -m benchmarks.serve_load"],
              "phases": {
                  "direct": {"clients": 64, "seconds": 20.0, "requests": 120, "mismatched": 0, "tokens_per_s": 1000.0,
                             "requests_per_s": 6.0, "chars_per_s": 250.0, "cores_busy": 1.6,
                             "rounds_tokens_per_s": [1100.0, 1000.0]},
                  "served": _tally(tokens_per_s=900.0, ratio_to_direct=0.9, server_cores_busy=1.5,
                                   client_cores_busy=0.3, rounds_ratio_to_direct=[0.85, 0.9],
                                   median_ratio_to_direct=0.875),
                  "mix": {**_tally(), "clients": 64, "tokens_per_s": 700.0, "server_logged_requests": 100,
                          "memory_mb": {"first_quarter_mean": 500.0, "last_quarter_mean": 501.0, "max": 510.0,
                                        "samples": 20, "every_10_s": [500.0, 501.0],
                                        "by_process_every_10_s": [[170, 13, 180], [171, 13, 181]]}},
                  "scaleout": {"one server": {**_tally(chars_per_s=225.0), "memory_mb": 520.0, "flags": "",
                                              "chars_ratio_to_direct": 0.9}}}}
    text = serve_load.markdown(result)
    assert "Served / direct tokens/s: **90.0%** (target ≥ 90 %)." in text
    assert "engine direct 1.6; served: server 1.5, clients 0.3" in text
    assert ("served / direct 85.0%, 90.0%; median **87.5%** (direct tokens/s 1,100, 1,000)" in text)
    assert "(by process, the server first: 170/13/180 → 171/13/181)" in text
    assert "| engine direct (one process, 2 lanes, no HTTP) | 6.0 | 250.0 | 100 % |" in text
    assert "| one server | 5.0 | 225.0 | 90.0% | 400.0 | 900.0 | 0 | 520.0 |" in text
