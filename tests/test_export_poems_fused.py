"""export.poems_fused and the fused attention form (PoemTransformer.use_fused_attention): the fused decoder computes
what the training model's decoder computes, and its nodes are completed after export."""
import copy

import pytest

torch = pytest.importorskip("torch")

from export.poems import DecoderGraph, EncoderGraph, example_inputs  # noqa: E402
from export.poems_fused import insert_unused_inputs  # noqa: E402
from trainers.poems_model import PoemTransformerConfig, PoemTransformer  # noqa: E402


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return PoemTransformer(PoemTransformerConfig(vocab_size=40, d_model=32, num_heads=4, num_encoder_layers=1,
                                           num_decoder_layers=2, dim_feedforward=64, max_len=40)).eval()


@pytest.mark.parametrize("batch,past,new", [(1, 0, 1), (2, 3, 2), (3, 7, 1)])
def test_torch_forward_matches_unfused_decoder(batch, past, new):
    model = tiny_model()
    folded = copy.deepcopy(model).fold_for_inference()
    _, args = example_inputs(folded, batch=batch, past_len=past, new_len=new)
    with torch.no_grad():
        want = DecoderGraph(model)(*args)
        got = DecoderGraph(folded.use_fused_attention())(*args)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_torch_forward_matches_unfused_encoder(batch):
    model = tiny_model()
    folded = copy.deepcopy(model).fold_for_inference().use_fused_attention()
    (src, mask), _ = example_inputs(model, batch=batch, src_len=6)
    mask[-1, 3:] = 0.0                                                   # a shorter source in the batch
    with torch.no_grad():
        for got, want in zip(EncoderGraph(folded)(src, mask), EncoderGraph(model)(src, mask)):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_insert_unused_inputs_places_empty_names():
    import onnx
    from onnx import helper
    self_attn = helper.make_node("MultiHeadAttention", ["q", "k", "v", "keep", "pk", "pv"], ["o", "k2", "v2"],
                                 domain="com.microsoft")
    cross = helper.make_node("MultiHeadAttention", ["q", "ck", "cv", "m"], ["o2"], domain="com.microsoft")
    other = helper.make_node("Add", ["o", "o2"], ["y"])
    model = helper.make_model(helper.make_graph([self_attn, cross, other], "g", [], []))
    assert insert_unused_inputs(model) == 2
    assert list(model.graph.node[0].input) == ["q", "k", "v", "", "keep", "", "pk", "pv"]
    assert list(model.graph.node[1].input) == ["q", "ck", "cv", "", "m"]
    assert list(model.graph.node[2].input) == ["o", "o2"]
    assert isinstance(model, onnx.ModelProto)
