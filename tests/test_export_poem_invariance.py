"""export.poem_invariance: rows decode bit-identically alone and in mixed batches, checked on the graphs and
declared in the manifest; the check catches kernels that mix rows."""
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("torch")

from export.poem_invariance import batch_invariance_problems, declare_batch_invariance  # noqa: E402
from export.quantize import quantize_poems  # noqa: E402
from genrt.contract import read_manifest  # noqa: E402
from genrt.poems.model import PoemModel  # noqa: E402


@pytest.mark.parametrize("which", ["tiny_poems_dir", "tiny_poems_plain_dir", "tiny_int8_dir"])
def test_exports_are_batch_invariant_and_say_so(request, which):
    model_dir = request.getfixturevalue(which)
    model = PoemModel.load(model_dir, provider="cpu", threads=1)
    assert batch_invariance_problems(model, rows=6) == []
    assert read_manifest(model_dir).batch_invariant and model.batch_invariant


def test_per_tensor_activation_scales_are_caught(tiny_poems_dir, tmp_path):
    """Dynamic int8 quantizes each call's activations with one scale for all rows: not invariant, and declared."""
    out = quantize_poems(tiny_poems_dir, tmp_path / "dynamic", scheme="dynamic")
    assert batch_invariance_problems(PoemModel.load(out, provider="cpu", threads=1))
    assert not read_manifest(out).batch_invariant


def test_a_model_whose_rows_see_each_other_fails_the_check(tiny_poems_dir):
    model = PoemModel.load(tiny_poems_dir, provider="cpu", threads=1)

    class Leaky:
        manifest, start, reorder, join = model.manifest, model.start, model.reorder, model.join

        def step(self, tokens, cache):
            logits, cache = model.step(tokens, cache)
            return logits + np.float32(1e-3) * len(tokens), replace(cache)   # depends on the batch size
    problems = batch_invariance_problems(Leaky())
    assert problems and all("differ from decoding it alone" in p for p in problems)


def test_declaring_rewrites_only_that_field(tiny_poems_dir, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(tiny_poems_dir, copy)
    before = read_manifest(copy)
    assert declare_batch_invariance(copy) is True
    assert read_manifest(copy) == replace(before, batch_invariant=True)
