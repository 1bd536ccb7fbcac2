"""export.fp16: float16 copies of both model kinds keep the contract's I/O and stay close to fp32."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from export.fp16 import fp16_copy
from genrt import FaceGenerator
from genrt.contract import read_manifest
from genrt.poems.model import PoemModel

from .test_export_poems import lockstep_logits, random_sources


@pytest.fixture(scope="module")
def poems_fp16(tiny_poems_dir, tmp_path_factory):
    return fp16_copy(tiny_poems_dir, tmp_path_factory.mktemp("poems_fp16"))


def test_fp16_poems_keep_the_contract_and_halve_the_weights(poems_fp16, tiny_poems_dir):
    assert read_manifest(poems_fp16).precision == "fp16"
    def weight_bytes(path):
        return sum(len(t.raw_data) for t in onnx.load(str(path)).graph.initializer)

    for name in ("encoder.onnx", "decoder.onnx"):
        graph = onnx.load(str(poems_fp16 / name)).graph
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
        assert weight_bytes(poems_fp16 / name) < 0.55 * weight_bytes(tiny_poems_dir / name)
    PoemModel.load(poems_fp16, provider="cpu", threads=1, precision="fp16")   # contract check on load


def test_fp16_poem_logits_stay_close(poems_fp16, tiny_poems_dir):
    fp32 = PoemModel.load(tiny_poems_dir, provider="cpu", threads=1)
    fp16 = PoemModel.load(poems_fp16, provider="cpu", threads=1)
    sources = random_sources(len(fp32.manifest.vocab), 3, seed=4)
    for l1, l2, _ in lockstep_logits(fp32, fp16, sources, steps=5):
        assert np.abs(l1 - l2).max() < 0.01 * np.abs(l1).max()


def test_fp16_faces_stay_close(tiny_faces_model, tmp_path):
    out = fp16_copy(tiny_faces_model, tmp_path / "faces_fp16")
    fp32 = FaceGenerator.load(tiny_faces_model, provider="cpu", threads=1).generate(4, seed=1).astype(int)
    fp16 = FaceGenerator.load(out, provider="cpu", threads=1, precision="fp16").generate(4, seed=1).astype(int)
    assert fp16.shape == fp32.shape and np.abs(fp16 - fp32).max() <= 3


def test_only_fp32_directories_convert(poems_fp16, tmp_path):
    with pytest.raises(ValueError, match="is fp16"):
        fp16_copy(poems_fp16, tmp_path / "again")
