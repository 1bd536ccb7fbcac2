"""export.poem_new_kv: a decoder that returns only the new keys and values gives the fused decoder's numbers, bit for
bit, through the runtime's host cache; what cannot be rewritten, or cannot run it, is refused by name."""
from __future__ import annotations

import collections
import shutil

import numpy as np
import onnx
import pytest

from export.model_dir import ExportError
from export.poem_new_kv import main, rewrite_decoder, upgrade, verify
from genrt.contract import read_manifest
from genrt.poems.generator import PoemGenerator
from genrt.poems.model import PoemModel

from .test_export_poems import lockstep_logits, random_sources


@pytest.fixture(scope="module")
def new_kv_dir(tiny_poems_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("new_kv") / "poems"
    shutil.copytree(tiny_poems_dir, out)
    report = upgrade(out)
    assert report["identical"] and report["batch_invariant"]
    return out


def test_the_manifest_declares_it_and_the_graph_has_no_cache_copy(new_kv_dir, tiny_poems_dir):
    m = read_manifest(new_kv_dir)
    assert m.cache_outputs == "new" and m.batch_invariant
    graph = onnx.load(str(new_kv_dir / m.decoder_file)).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    assert ops["MultiHeadAttention"] == m.num_decoder_layers                  # cross-attention only
    assert ops["FusedMatMul"] == 2 * m.num_decoder_layers and ops["Softmax"] == m.num_decoder_layers
    assert [o.name for o in graph.output] == [t.name for t in m.decoder().outputs]
    assert not any(o.name.startswith("present") for o in graph.output)
    before = {i.name: i for i in onnx.load(str(tiny_poems_dir / m.decoder_file)).graph.initializer}
    after = {i.name: i for i in graph.initializer}
    assert all(after[name] == init for name, init in before.items() if name in after)     # weights untouched


def test_steps_give_the_fused_decoders_logits_bit_for_bit(new_kv_dir, tiny_poems_dir):
    fused = PoemModel.load(tiny_poems_dir, provider="cpu", threads=1)
    new = PoemModel.load(new_kv_dir, provider="cpu", threads=1)
    assert not new.device_cache and new.batch_invariant
    sources = random_sources(len(new.manifest.vocab), 5, seed=11)
    for l1, l2, _ in lockstep_logits(fused, new, sources, steps=20):          # past a cache block: growth
        assert np.array_equal(l1, l2)


@pytest.mark.parametrize("options", [dict(do_sample=False), dict(num_beams=3), dict(do_sample=True),
                                     dict(do_sample=True, num_beams=2), dict()])
def test_every_mode_decodes_the_same_poems(new_kv_dir, tiny_poems_dir, options):
    prompts = ["春江", "花月夜长", "山", "明月照高楼流光正徘徊"]          # different lengths: rows join and leave
    fused = PoemGenerator.load(tiny_poems_dir, provider="cpu", threads=2)
    new = PoemGenerator.load(new_kv_dir, provider="cpu", threads=2)
    a = fused.generate(prompts, fused.options(max_new_tokens=24, **options), seed=3)
    b = new.generate(prompts, new.options(max_new_tokens=24, **options), seed=3)
    assert [[(p.text, p.score) for p in poems] for poems in a] == [[(p.text, p.score) for p in poems] for poems in b]


def test_scoring_is_unchanged(new_kv_dir, tiny_poems_dir):
    fused = PoemModel.load(tiny_poems_dir, provider="cpu", threads=1)
    new = PoemModel.load(new_kv_dir, provider="cpu", threads=1)
    sources = random_sources(len(new.manifest.vocab), 3, seed=2)
    targets = [[1] + list(s[::-1]) for s in sources]
    for x, y in zip(fused.teacher_forced_logits(sources, targets), new.teacher_forced_logits(sources, targets)):
        assert np.array_equal(x, y)


def test_a_device_cache_is_refused_by_name(new_kv_dir):
    with pytest.raises(ValueError, match="cache_outputs 'new'.*device_cache=True"):
        PoemModel.load(new_kv_dir, provider="cpu", threads=1, device_cache=True)


def test_verify_catches_a_miswired_rewrite(tiny_poems_dir):
    m = read_manifest(tiny_poems_dir)
    fused = onnx.load(str(tiny_poems_dir / m.decoder_file))
    wrong = rewrite_decoder(fused, m)
    node = next(n for n in wrong.graph.node if n.op_type == "FusedMatMul")
    next(a for a in node.attribute if a.name == "alpha").f = 3.0             # the cache's scores scaled wrong
    with pytest.raises(ExportError, match="differs by"):
        verify(fused, wrong, m)


def test_what_cannot_be_rewritten_is_refused(new_kv_dir, tiny_poems_plain_dir, tmp_path):
    with pytest.raises(ExportError, match="already returns only the new keys"):
        upgrade(new_kv_dir)
    plain = tmp_path / "plain"
    shutil.copytree(tiny_poems_plain_dir, plain)
    with pytest.raises(ExportError, match="fused self-attention nodes"):
        upgrade(plain)
    assert read_manifest(plain).cache_outputs == "present"                   # left as it was


def test_a_decoder_without_self_mask_is_sent_to_its_upgrade_first(tiny_poems_dir):
    m = read_manifest(tiny_poems_dir)
    old = onnx.load(str(tiny_poems_dir / m.decoder_file))
    kept = [i for i in old.graph.input if i.name != "self_mask"]
    del old.graph.input[:]
    old.graph.input.extend(kept)
    with pytest.raises(ExportError, match="no self_mask input: upgrade it first with python -m export.poem_self_mask"):
        rewrite_decoder(old, m)


def test_the_command_rewrites_in_place(tiny_poems_dir, tmp_path, capsys):
    out = tmp_path / "poems"
    shutil.copytree(tiny_poems_dir, out)
    main([str(out)])
    assert "bit-identical" in capsys.readouterr().out and read_manifest(out).cache_outputs == "new"
    with pytest.raises(SystemExit, match="export failed"):
        main([str(out)])
