"""export.quantize: the int8 poem variant is a valid model directory whose weight MatMuls run as per-row int8
products (or MatMulNBits, or MatMulInteger, by scheme) and whose logits stay close to fp32."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest

from export.quantize import quantize_poems
from genrt.contract import read_manifest
from genrt.poems.model import PoemModel

from .test_export_poems import lockstep_logits, random_sources


@pytest.fixture
def int8_dir(tiny_int8_dir):
    return tiny_int8_dir


def test_int8_directory_is_self_describing(int8_dir, tiny_poems_dir):
    m, fp32 = read_manifest(int8_dir), read_manifest(tiny_poems_dir)
    assert m.precision == "int8" and m.vocab == fp32.vocab and m.decoder() == fp32.decoder()
    assert not list(int8_dir.glob("*.data"))


@pytest.mark.parametrize("graph", ["encoder.onnx", "decoder.onnx"])
def test_every_weight_matmul_is_quantized(int8_dir, tiny_poems_dir, graph):
    before = collections.Counter(n.op_type for n in onnx.load(str(tiny_poems_dir / graph)).graph.node)
    after = collections.Counter(n.op_type for n in onnx.load(str(int8_dir / graph)).graph.node)
    assert after["MatMulIntegerToFloat"] > 0 and after["MatMulNBits"] == 0
    assert before["MatMul"] - after["MatMul"] == after["MatMulIntegerToFloat"]   # left: activation x activation
    assert after["QuantizeLinear"] == after["ReduceMax"] <= after["MatMulIntegerToFloat"]  # one scale per input


def test_int8_logits_stay_close_to_fp32(int8_dir, tiny_poems_dir):
    fp32 = PoemModel.load(tiny_poems_dir, provider="cpu", threads=1)
    int8 = PoemModel.load(int8_dir, provider="cpu", threads=1, precision="int8")
    sources = random_sources(len(fp32.manifest.vocab), 4, seed=3)
    for l1, l2, _ in lockstep_logits(fp32, int8, sources, steps=6):
        scale = np.abs(l1).max()
        assert np.abs(l1 - l2).max() < 0.02 * scale                     # measured about 0.5 %


def test_dynamic_scheme_uses_matmulinteger_and_stays_close(tiny_poems_dir, tmp_path):
    out = quantize_poems(tiny_poems_dir, tmp_path / "dynamic", scheme="dynamic")
    ops = collections.Counter(n.op_type for n in onnx.load(str(out / "decoder.onnx")).graph.node)
    assert ops["MatMulInteger"] > 0 and ops["MatMulNBits"] == 0
    fp32 = PoemModel.load(tiny_poems_dir, provider="cpu", threads=1)
    int8 = PoemModel.load(out, provider="cpu", threads=1)
    sources = random_sources(len(fp32.manifest.vocab), 2, seed=8)
    l1, _ = fp32.step(np.ones((2, 1), np.int64), fp32.start(sources))
    l2, _ = int8.step(np.ones((2, 1), np.int64), int8.start(sources))
    assert np.abs(l1 - l2).max() < 0.05 * np.abs(l1).max()


def test_nbits_scheme_uses_matmulnbits_and_stays_batch_invariant(tiny_poems_dir, tmp_path):
    from export.poem_invariance import batch_invariance_problems
    out = quantize_poems(tiny_poems_dir, tmp_path / "nbits", scheme="nbits")
    ops = collections.Counter(n.op_type for n in onnx.load(str(out / "decoder.onnx")).graph.node)
    assert ops["MatMulNBits"] > 0 and ops["MatMulIntegerToFloat"] == 0
    int8 = PoemModel.load(out, provider="cpu", threads=1)
    assert batch_invariance_problems(int8) == [] and read_manifest(out).batch_invariant


def test_unknown_scheme_is_refused(tiny_poems_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown int8 scheme"):
        quantize_poems(tiny_poems_dir, tmp_path / "x", scheme="int4")
