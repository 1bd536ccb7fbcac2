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
    assert m.precision == "int8" and m.vocab == fp32.vocab and m.decoder().inputs == fp32.decoder().inputs
    assert (m.cache_outputs, fp32.cache_outputs) == ("new", "present")      # int8 is for CPUs: no cache copy
    assert [t.name for t in m.decoder().outputs if "key" in t.name] == ["new_key.0", "new_key.1"]
    assert not list(int8_dir.glob("*.data"))


def test_present_cache_outputs_keep_the_fused_attention(tiny_poems_dir, int8_dir, tmp_path):
    out = quantize_poems(tiny_poems_dir, tmp_path / "present", cache_outputs="present")
    assert read_manifest(out).decoder() == read_manifest(tiny_poems_dir).decoder()
    present = PoemModel.load(out, provider="cpu", threads=1)
    new = PoemModel.load(int8_dir, provider="cpu", threads=1)
    sources = random_sources(len(new.manifest.vocab), 3, seed=5)
    for l1, l2, _ in lockstep_logits(present, new, sources, steps=5):
        assert np.array_equal(l1, l2)                          # the rewrite changes no number


def test_cache_outputs_are_checked(tiny_poems_dir, int8_dir, tmp_path):
    from export.model_dir import ExportError
    with pytest.raises(ValueError, match="cache_outputs must be one of"):
        quantize_poems(tiny_poems_dir, tmp_path / "x", cache_outputs="grown")
    with pytest.raises(ExportError, match="returns only the new keys and values"):
        quantize_poems(int8_dir, tmp_path / "y", cache_outputs="present")


@pytest.mark.parametrize("graph", ["encoder.onnx", "decoder.onnx"])
def test_every_weight_matmul_is_quantized(int8_dir, tiny_poems_dir, graph):
    def weight_matmuls(model):
        weights = {i.name for i in model.graph.initializer}
        return sum(n.op_type == "MatMul" and n.input[1] in weights for n in model.graph.node)
    fp32, int8 = onnx.load(str(tiny_poems_dir / graph)), onnx.load(str(int8_dir / graph))
    after = collections.Counter(n.op_type for n in int8.graph.node)
    assert after["MatMulIntegerToFloat"] > 0 and after["MatMulNBits"] == 0
    assert weight_matmuls(int8) == 0 and weight_matmuls(fp32) == after["MatMulIntegerToFloat"]  # left: activations
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
