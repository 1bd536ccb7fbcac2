"""benchmarks.engine_load: open-loop Poisson load on the engine, its table, knee and plot."""
import asyncio

import pytest

from benchmarks import engine_load


def _row(rate, p50, chars=100.0):
    return {"offered_per_s": rate, "requests": int(rate * 19), "offered_s": 20.0, "answered_per_s": rate * 0.9,
            "chars_per_s": chars, "latency_p50_ms": p50, "latency_p99_ms": p50 * 2, "first_char_p50_ms": p50 / 2,
            "first_char_p99_ms": p50, "refused": 0}


def test_turn_up_is_the_first_rate_whose_median_doubles():
    assert engine_load.turn_up([_row(1, 100), _row(2, 150), _row(4, 250), _row(8, 900)]) == 4
    assert engine_load.turn_up([_row(1, 100), _row(2, 120)]) is None


def test_markdown_and_png(tmp_path):
    report = {"cpu": {"model": "Test CPU", "flags": ["avx2"]}, "model": "bundled", "precision": "int8",
              "threads": 2, "max_rows": 64, "seconds": 20.0, "onnxruntime": "1.32.0", "date": "2026-01-01",
              "rows": [_row(2, 100, 500), _row(4, 300, 900)], "latency_turns_up_at": 4}
    md = engine_load.markdown(report).splitlines()
    assert md[0].startswith("Test CPU (avx2); bundled (int8), 2 threads, max 64 rows; 20 s of Poisson arrivals")
    assert "| 4 | 3.80 | 3.60 | 900 | 300 | 600 | 150 | 300 | 0 |" in md        # arrived: 76 requests over 20 s
    assert md[-1].startswith("Throughput at saturation: 3.60 requests/s, 900 characters/s (offered 4/s). p50 "
                             "latency turns up (over twice the lightest load's) at 4 requests/s.")
    engine_load.write_png(report, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_a_short_run_answers_every_request(tiny_poems_dir):
    from genrt.poems.engine import PoemEngine
    from genrt.poems.generator import PoemGenerator
    gen = PoemGenerator.load(tiny_poems_dir, provider="cpu", threads=1)
    with PoemEngine(gen) as engine:
        row = asyncio.run(engine_load._run_rate(engine, rate=20, seconds=0.5, seed=1,
                                                         titles=("春江", "明月", "山水")))
    assert row["requests"] == row["answered"] > 0 and row["refused"] == 0
    assert 0 < row["first_char_p50_ms"] <= row["latency_p50_ms"] and row["chars_per_s"] > 0
