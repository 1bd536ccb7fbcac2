"""Benchmark peers from model directories (benchmarks.peers): the same weights as the graphs, no training files."""
import numpy as np
import pytest

from benchmarks.peers import folded_faces_generator, poems_checkpoint
from tests.test_trainer_poems_warmstart import trained_looking  # noqa: F401 -- a fixture: a model dir like a real one


def test_folded_faces_generator_matches_the_graph(tiny_faces_model):
    import torch
    model, nz = folded_faces_generator(tiny_faces_model)          # checks itself against the graph (±1 grey level)
    with torch.inference_mode():
        out = model(torch.zeros(2, nz))
    assert out.shape[:2] == (2, 3) and float(out.abs().max()) <= 1.0


def test_folded_faces_generator_refuses_another_precision(tiny_faces_model, tmp_path):
    import json
    import shutil
    copy = tmp_path / "faces"
    shutil.copytree(tiny_faces_model, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "precision": "int8"}))
    with pytest.raises(ValueError, match="needs the fp32 model"):
        folded_faces_generator(copy)


def test_poem_peer_weights_reproduce_the_model(trained_looking, tmp_path):  # noqa: F811
    from genrt.poems.model import PoemModel
    from trainers.poems import load_model
    import torch
    _, (tiny_poems_dir, _) = trained_looking
    path = poems_checkpoint(tiny_poems_dir, tmp_path / "weights.pt")
    model, vocab, _ = load_model(path)
    onnx_model = PoemModel.load(tiny_poems_dir, provider="cpu", threads=1)
    assert vocab == list(onnx_model.manifest.vocab)
    src = [[4, 10, 11, 12]]
    with torch.no_grad():
        ref = model(torch.tensor(src), torch.ones(1, 4), torch.tensor([[1, 20, 21]]))[0, -1]
    cache = onnx_model.start(src)
    for t in ([[1]], [[20]], [[21]]):                                     # one new token per step
        logits, cache = onnx_model.step(np.asarray(t, np.int64), cache)
    np.testing.assert_allclose(logits[0], ref.numpy(), atol=1e-3)
