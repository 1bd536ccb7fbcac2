"""Export of the poem Transformer: contract I/O, torch parity, dynamic shapes, cache vs no cache."""
import json

import numpy as np
import onnx
import pytest

from genrt.contract import CACHE_ALIGN, ManifestError, PoemsManifest, read_manifest
from genrt.graph_io import check_graph_io
from genrt.poems.model import PoemModel, RecomputeModel

torch = pytest.importorskip("torch")

from export.poems_reference import (  # noqa: E402
    TorchNoCacheModel, compare_decoding, lockstep_logits, random_sources, step_logit_parity,
)
from trainers.poems import load_model  # noqa: E402

_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}


def onnx_io(path):
    graph = onnx.load(str(path)).graph

    def describe(values):
        return [(v.name, _DTYPES.get(v.type.tensor_type.elem_type, "?"),
                 [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values]
    return describe(graph.input), describe(graph.output)


@pytest.fixture(params=["fused", "plain"])
def exported_dir(request):
    """The tiny model exported both ways: onnxruntime's fused attention (default) and standard ONNX ops."""
    return request.getfixturevalue("tiny_poems_dir" if request.param == "fused" else "tiny_poems_plain_dir")


def test_every_graph_matches_the_contract(exported_dir):
    tiny_poems_dir = exported_dir
    manifest = read_manifest(tiny_poems_dir)
    assert isinstance(manifest, PoemsManifest)
    for spec in manifest.graphs().values():
        assert check_graph_io(spec, *onnx_io(tiny_poems_dir / spec.file)) == []
    assert not list(tiny_poems_dir.glob("*.data")), "model directory must be self-contained"


def test_export_report_records_parity(exported_dir):
    report = json.loads((exported_dir / "export_report.json").read_text())
    assert report["max_abs_logit_diff"] <= 1e-4
    assert report["greedy_identical"] == report["prompts"] == 20
    assert report["beam_identical"] == 20


def test_decoder_logits_match_torch_at_several_shapes(tiny_poems_checkpoint, exported_dir):
    model, _, _ = load_model(tiny_poems_checkpoint)
    onnx_model = PoemModel.load(exported_dir, provider="cpu", threads=1)
    assert step_logit_parity(model, onnx_model, batches=(1, 2, 5), steps=8) <= 1e-4


def test_encoder_handles_padding_and_batch_sizes(tiny_poems_checkpoint, tiny_poems_dir):
    """A prompt gives the same first-step logits alone and inside a padded batch."""
    onnx_model = PoemModel.load(tiny_poems_dir, provider="cpu", threads=1)
    sources = random_sources(len(onnx_model.manifest.vocab), 4, seed=3)
    sos = np.ones((4, 1), np.int64)
    batch_logits, _ = onnx_model.step(sos, onnx_model.start(sources))
    for i, src in enumerate(sources):
        alone, _ = onnx_model.step(sos[:1], onnx_model.start([src]))
        np.testing.assert_allclose(batch_logits[i], alone[0], atol=1e-5)


def test_cache_equals_recompute(exported_dir):
    cached = PoemModel.load(exported_dir, provider="cpu", threads=1)
    recompute = RecomputeModel(cached)
    sources = random_sources(len(cached.manifest.vocab), 3, seed=5)
    for l1, l2, c1 in lockstep_logits(cached, recompute, sources, steps=10):
        np.testing.assert_allclose(l1, l2, atol=1e-5)
    assert c1.lengths.tolist() == [10] * 3 and c1.self_kv[0].shape[2] % CACHE_ALIGN == 0


def test_log_norm_output_is_each_steps_log_sum_exp(exported_dir):
    """The decoder's log_norm output is the log-sum-exp of the logits it returns, at any batch size, after a
    multi-token prefill and per step, through the recompute path and for joined rows; a reorder drops it."""
    from genrt.decoding.processors import logsumexp
    model = PoemModel.load(exported_dir, provider="cpu", threads=1)
    assert model.manifest.log_norm
    sources = random_sources(len(model.manifest.vocab), 3, seed=7)
    for step_model in (model, RecomputeModel(model)):
        cache = step_model.start(sources)
        tokens = np.tile(np.array([[1, 9, 12]], np.int64), (3, 1))                   # <sos> + two ids
        for _ in range(4):
            logits, cache = step_model.step(tokens, cache)
            assert cache.log_norm.shape == (3,)
            np.testing.assert_allclose(cache.log_norm, logsumexp(logits.astype(np.float64))[:, 0], atol=1e-5)
            tokens = logits.argmax(1)[:, None]
    _, first = model.step(np.ones((1, 1), np.int64), model.start(sources[:1]))
    joined = model.join(first, model.start(sources[1:2]))
    logits, joined = model.step(np.ones((2, 1), np.int64), joined)
    assert joined.lengths.tolist() == [2, 1]
    np.testing.assert_allclose(joined.log_norm, logsumexp(logits.astype(np.float64))[:, 0], atol=1e-5)
    _, cache = model.step(np.ones((3, 1), np.int64), model.start(sources))
    assert cache.log_norm is not None and model.reorder(cache, np.array([2, 1, 0])).log_norm is None


def test_scores_are_the_same_with_or_without_the_log_norm_output(exported_dir):
    """Greedy and sampled Poem scores come from the graph's log_norm when there is one, else from numpy."""
    from dataclasses import replace

    from genrt.decoding.processors import SuppressTokens, make_sampler, pick_greedy
    from genrt.decoding.scheduler import decode
    from genrt.decoding.search import SampleSearch

    model = PoemModel.load(exported_dir, provider="cpu", threads=1)

    class WithoutLogNorm:
        def start(self, sources, copies=1):
            return model.start(sources, copies)

        def step(self, tokens, cache):
            logits, cache = model.step(tokens, cache)
            return logits, replace(cache, log_norm=None)

        reorder, join = model.reorder, model.join

    sources = random_sources(len(model.manifest.vocab), 2, seed=8)
    suppress = [SuppressTokens([0, 1, 3, 4, 5])]
    for pick in (pick_greedy, None):
        runs = []
        for m in (model, WithoutLogNorm()):
            pickers = [pick or make_sampler([np.random.default_rng(s)], 1.0, 0, 1.0) for s in (1, 2)]
            searches = [SampleSearch(np.ones((1, 1), np.int64), 12, 2, suppress, p) for p in pickers]
            runs.append([h[0] for h in decode(m, sources, searches)])
        assert [h.tokens for h in runs[0]] == [h.tokens for h in runs[1]]
        np.testing.assert_allclose([h.score for h in runs[0]], [h.score for h in runs[1]], atol=1e-4)
        assert all(h.score < 0 for h in runs[0])


def test_greedy_and_beam_identical_to_torch_without_cache(tiny_poems_checkpoint, exported_dir):
    model, _, _ = load_model(tiny_poems_checkpoint)
    onnx_model = PoemModel.load(exported_dir, provider="cpu", threads=1)
    result = compare_decoding(TorchNoCacheModel(model), onnx_model, prompts=20, max_new=16, num_beams=3)
    assert result == {"prompts": 20, "greedy_identical": 20, "beam_identical": 20}


def test_fused_decoder_is_smaller_and_says_so(tiny_poems_dir, tiny_poems_plain_dir):
    """Each attention block of the default export is one MultiHeadAttention node; the report names the kind."""
    fused, plain = (onnx.load(str(d / "decoder.onnx")).graph.node for d in (tiny_poems_dir, tiny_poems_plain_dir))
    layers = read_manifest(tiny_poems_dir).num_decoder_layers
    assert sum(n.op_type == "MultiHeadAttention" for n in fused) == 2 * layers
    assert not any(n.domain for n in plain), "plain export must use standard ONNX ops only"
    assert len(fused) < len(plain)
    for d, kind in ((tiny_poems_dir, "fused"), (tiny_poems_plain_dir, "plain")):
        assert json.loads((d / "export_report.json").read_text())["attention"] == kind


def test_fused_decoder_builds_no_mask_nodes(tiny_poems_dir):
    """The masks live inside the fused nodes: self-attention is unidirectional and cross-attention reads the
    source's keep-mask as key_padding_mask, so no comparison/Where/Expand chain is built per call or per layer."""
    nodes = onnx.load(str(tiny_poems_dir / "decoder.onnx")).graph.node
    attention = [n for n in nodes if n.op_type == "MultiHeadAttention"]
    self_attn = [n for n in attention if len(n.output) == 3]
    cross = [n for n in attention if len(n.output) == 1]
    assert len(self_attn) == len(cross) == read_manifest(tiny_poems_dir).num_decoder_layers
    for n in self_attn:
        assert {a.name: a.i for a in n.attribute if a.name == "unidirectional"} == {"unidirectional": 1}
        assert n.input[3] == n.input[5] == ""                    # no bias, no attention_bias
    assert len({n.input[4] for n in self_attn} - {""}) == 1       # one self keep-mask (the filled slots) for all
    keep_masks = {n.input[4] for n in cross}
    assert len(keep_masks) == 1 and "" not in keep_masks          # one int32 keep-mask shared by every layer
    assert all(n.input[5:] == [] or n.input[5] == "" for n in cross)
    assert not [n.op_type for n in nodes if n.op_type in ("Where", "Expand", "LessOrEqual", "CumSum", "Equal")]


def test_fused_encoder_attends_in_one_node_per_layer(tiny_poems_dir):
    nodes = onnx.load(str(tiny_poems_dir / "encoder.onnx")).graph.node
    attention = [n for n in nodes if n.op_type == "MultiHeadAttention"]
    assert len(attention) == read_manifest(tiny_poems_dir).num_encoder_layers
    assert all(len(n.output) == 1 and n.input[4] for n in attention)   # the source keep-mask as key_padding_mask
    assert not [n.op_type for n in nodes if n.op_type in ("Softmax", "Where")]   # no attention written out


def test_loading_names_every_problem(tiny_poems_dir, tmp_path):
    data = json.loads((tiny_poems_dir / "manifest.json").read_text())
    data["format_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="format_version"):
        read_manifest(tmp_path)
    data["format_version"] = 1
    del data["d_model"]
    data["num_heads"] = 0
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="missing field 'd_model'"):
        read_manifest(tmp_path)
    data["d_model"] = 32
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError) as err:
        read_manifest(tmp_path)
    assert "num_heads must be a positive integer" in str(err.value)
    assert "missing graph file encoder.onnx" in str(err.value)
    assert "missing graph file decoder.onnx" in str(err.value)


def test_device_cache_path_matches_plain_path(exported_dir):
    """The IOBinding path (the CUDA default, KV cache kept as OrtValues) gives the same logits, log_norm and
    tokens; on CPU it binds host memory, so it runs everywhere."""
    tiny_poems_dir = exported_dir
    from genrt.decoding.processors import SuppressTokens
    from genrt.decoding.scheduler import decode_beams, decode_greedy
    plain = PoemModel.load(tiny_poems_dir, provider="cpu", threads=1)
    bound = PoemModel.load(tiny_poems_dir, provider="cpu", threads=1, device_cache=True)
    sources = random_sources(len(plain.manifest.vocab), 3, seed=9)
    c1, c2 = plain.start(sources), bound.start(sources)
    tokens = np.ones((3, 2), np.int64)
    for _ in range(5):
        l1, c1 = plain.step(tokens, c1)
        l2, c2 = bound.step(tokens, c2)
        np.testing.assert_allclose(l1, l2, atol=1e-6)
        assert isinstance(c2.log_norm, np.ndarray)
        np.testing.assert_allclose(c1.log_norm, c2.log_norm, atol=1e-6)
        tokens = l1.argmax(1)[:, None]
    suppress = [SuppressTokens([0, 1, 3, 4, 5])]
    for m in (plain, bound):
        m.greedy = [decode_greedy(m, s, 1, 12, 2, suppress) for s in sources]
        m.beam = [decode_beams(m, s, 1, 3, 12, 2, suppress) for s in sources]
    assert [h.tokens for h in plain.greedy] == [h.tokens for h in bound.greedy]
    assert [[h.tokens for h in b] for b in plain.beam] == [[h.tokens for h in b] for b in bound.beam]
    joined = bound.join(bound.step(np.ones((1, 1), np.int64), bound.start(sources[:1]))[1], bound.start(sources[1:]))
    logits, joined = bound.step(np.ones((3, 1), np.int64), joined)     # rows of lengths 1, 0, 0 on the device path
    for i, src in enumerate(sources[1:], start=1):
        alone, _ = plain.step(np.ones((1, 1), np.int64), plain.start([src]))
        np.testing.assert_allclose(logits[i], alone[0], atol=1e-5)
    recompute = RecomputeModel(bound)
    l3, _ = recompute.step(np.ones((3, 1), np.int64), recompute.start(sources))
    l4, _ = plain.step(np.ones((3, 1), np.int64), plain.start(sources))
    np.testing.assert_allclose(l3, l4, atol=1e-5)


def test_runtime_score_equals_torch_nll(tiny_poems_checkpoint, exported_dir):
    """Teacher-forced NLL through the decoder's all_logits output = torch's, within 1e-4 per token."""
    import torch
    import torch.nn.functional as F
    from genrt.poems.generator import PoemGenerator
    from trainers.poems import load_model
    model, vocab, _ = load_model(tiny_poems_checkpoint)
    gen = PoemGenerator.load(exported_dir, provider="cpu", threads=1)
    pairs = [("春江", "春江花月夜，明月上高山。"), ("山水清风", "白云深山人家。"), ("明月", "明月光")]
    got = gen.score([p for p, _ in pairs], [q for _, q in pairs], batch_size=2)
    tok = gen.tokenizer
    for (prompt, poem), score in zip(pairs, got):
        src = torch.tensor([tok.encode_prompt(prompt, "title", 80)])
        tgt = tok.encode_text(poem) + [tok.eos_id]
        logits = model(src, torch.ones_like(src, dtype=torch.float32), torch.tensor([[tok.sos_id] + tgt[:-1]]))
        want = -F.cross_entropy(logits[0].double(), torch.tensor(tgt), reduction="sum").item()
        assert score.tokens == len(tgt)
        assert abs(score.logprob - want) <= 1e-4 * len(tgt), (score.logprob, want)


def test_a_calibrated_export_divides_every_logit_by_its_recorded_temperature(tiny_calibrated_poems):
    _, _, plain_dir, calibrated_dir = tiny_calibrated_poems
    calibration = read_manifest(calibrated_dir).training["calibration"]
    assert "calibration" not in read_manifest(plain_dir).training
    t = calibration["temperature"]
    assert 0 < t and calibration["train_nll_at_best_grid_temperature"] <= calibration["train_nll_uncalibrated"]
    plain, calibrated = (PoemModel.load(d, provider="cpu", threads=1) for d in (plain_dir, calibrated_dir))
    sources = random_sources(len(plain.manifest.vocab), 2, seed=4)
    tokens = np.ones((2, 1), np.int64)
    (l1, c1), (l2, c2) = plain.step(tokens, plain.start(sources)), calibrated.step(tokens, calibrated.start(sources))
    np.testing.assert_allclose(l2, l1 / t, rtol=1e-4, atol=1e-4)
    assert json.loads((calibrated_dir / "export_report.json").read_text())["max_abs_logit_diff"] <= 1e-4
