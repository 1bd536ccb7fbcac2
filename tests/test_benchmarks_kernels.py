"""benchmarks.kernels: the decoder's matrix shapes, the one-MatMul graphs, the per-step totals and the report."""
from pathlib import Path

import numpy as np
import pytest

from benchmarks.kernels import ROWS, decoder_shapes, one_matmul, totals, write_markdown


def test_kernel_benchmark_covers_every_decoder_matrix_and_scheme(tiny_poems_dir, tmp_path):
    from benchmarks.kernels import main as kernels_main
    result = kernels_main(["--model", str(tiny_poems_dir), "--out", str(tmp_path), "--quick"])
    rows = result["rows"]
    assert {r["scheme"] for r in rows} == {"fp32", "rows", "nbits", "dynamic"}
    assert len(rows) == 5 * 4 and all(r["us_m1"] > 0 and r["us_m32"] > 0 for r in rows)
    assert [r["n"] for r in rows if r["matrix"] == "output layer"][0] == 88      # the tiny vocab
    md = (tmp_path / "kernels.md").read_text(encoding="utf-8")
    assert "| nbits |" in md and "M=4 / M=1" in md


def test_decoder_shapes_follow_the_manifest(tiny_poems_dir):
    pytest.importorskip("torch")                                          # the fixture trains and exports
    d, ff, layers = 32, 64, 2                                             # tests/fixtures_poems.py
    assert decoder_shapes(tiny_poems_dir) == [
        ("self-attention QKV", d, 3 * d, layers), ("attention out / cross query", d, d, 3 * layers),
        ("feed-forward in", d, ff, layers), ("feed-forward out", ff, d, layers), ("output layer", d, 88, 1)]


def test_one_matmul_graph_multiplies_by_its_seeded_weight(tmp_path):
    pytest.importorskip("onnx")
    import onnxruntime as ort
    path = one_matmul(6, 4, tmp_path / "mm.onnx", seed=3)
    weight = (np.random.default_rng(3).standard_normal((6, 4)) * 0.05).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for m in (1, 3):                                                      # the row count is dynamic
        x = np.random.default_rng(m).standard_normal((m, 6)).astype(np.float32)
        np.testing.assert_allclose(session.run(None, {"x": x})[0], x @ weight, rtol=1e-5, atol=1e-6)


def row(matrix, scheme, per_step, us):
    return {"matrix": matrix, "k": 32, "n": 96, "per_step": per_step, "scheme": scheme,
            **{f"us_m{m}": u for m, u in zip(ROWS, us)}}


def test_totals_weight_each_matrix_by_its_count_per_step():
    rows = [row("a", "fp32", 2, (1.0, 2.0, 8.0)), row("b", "fp32", 1, (3.0, 3.0, 6.0)),
            row("a", "nbits", 3, (0.5, 1.0, 4.0))]
    assert totals(rows) == {"fp32": {1: 5.0, 4: 7.0, 32: 22.0}, "nbits": {1: 1.5, 4: 3.0, 32: 12.0}}


def test_markdown_lists_every_matrix_and_the_ratios(tmp_path):
    rows = [row("self-attention QKV", "fp32", 2, (1.0, 2.0, 8.0)), row("output layer", "nbits", 1, (4.0, 5.0, 20.0))]
    write_markdown(rows, Path("models/poems_int8"), tmp_path / "kernels.md")
    lines = (tmp_path / "kernels.md").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("Matrix products of `poems_int8`'s decoder")
    assert "| self-attention QKV (32 x 96) | 2 | fp32 | 1.0 | 2.0 | 8.0 | 2.00 |" in lines
    assert "| output layer (32 x 96) | 1 | nbits | 4.0 | 5.0 | 20.0 | 1.25 |" in lines
    assert "| fp32 | 2 | 4 | 16 | 2.00 | 8.00 |" in lines
    assert "| nbits | 4 | 5 | 20 | 1.25 | 5.00 |" in lines
