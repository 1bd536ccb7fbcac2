"""CTranslate2 conversion of the poem model (optional `bench` extra): same tokens as genrt decoding of torch."""
from __future__ import annotations

import json

import numpy as np
import pytest

ctranslate2 = pytest.importorskip("ctranslate2")
torch = pytest.importorskip("torch")

from export.ctranslate2 import REPORT_NAME, SUPPRESSED_IDS, convert_to_ctranslate2, decode_options  # noqa: E402


@pytest.fixture(scope="module")
def ct2_dir(tiny_poems_checkpoint, tmp_path_factory):
    torch.set_num_threads(1)
    return convert_to_ctranslate2(tiny_poems_checkpoint, tmp_path_factory.mktemp("ct2") / "poems")


def test_conversion_report(ct2_dir):
    report = json.loads((ct2_dir / REPORT_NAME).read_text(encoding="utf-8"))["fp32"]
    assert report["greedy_identical"] == report["prompts"] == 20
    assert report["max_abs_logprob_diff"] < 1e-4
    assert report["beam_identical"] == report["prompts"]
    config = json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))
    assert config["decoder_start_token"] == "<sos>" and config["eos_token"] == "<eos>"
    assert not config["add_source_bos"] and not config["add_source_eos"]


def test_greedy_tokens_match_torch(ct2_dir, tiny_poems_checkpoint):
    from export.poems_reference import TorchNoCacheModel, random_sources
    from genrt.decoding.processors import SuppressTokens
    from genrt.decoding.scheduler import decode_greedy
    from trainers.poems import load_model

    model, vocab, _ = load_model(tiny_poems_checkpoint)
    ref = TorchNoCacheModel(model)
    sources = random_sources(len(vocab), 20, seed=7)
    translator = ctranslate2.Translator(str(ct2_dir), device="cpu", intra_threads=1, inter_threads=1)
    results = translator.translate_batch([[vocab[i] for i in s] for s in sources], beam_size=1,
                                         max_decoding_length=24, **decode_options(vocab))
    index = {t: i for i, t in enumerate(vocab)}
    for src, result in zip(sources, results):
        want = decode_greedy(ref, src, 1, 24, 2, [SuppressTokens(list(SUPPRESSED_IDS))]).tokens
        assert [index[t] for t in result.hypotheses[0]] == want, src


def test_int8_conversion(tiny_poems_checkpoint, tmp_path):
    out = convert_to_ctranslate2(tiny_poems_checkpoint, tmp_path / "int8", quantization="int8", check_prompts=5,
                                 check_beam=False)
    report = json.loads((out / REPORT_NAME).read_text(encoding="utf-8"))
    assert report["quantization"] == "int8"
    assert report["fp32_check"]["greedy_identical"] == 5          # wiring checked on the fp32 twin
    assert 0 <= report["int8"]["greedy_identical"] <= 5           # int8 agreement is reported, not required
    translator = ctranslate2.Translator(str(out), device="cpu", intra_threads=1, compute_type="int8")
    assert translator.translate_batch([["<title>", "春", "江"]], beam_size=1, max_decoding_length=4)[0].hypotheses


def test_rejects_unknown_quantization(tiny_poems_checkpoint, tmp_path):
    with pytest.raises(ValueError):
        convert_to_ctranslate2(tiny_poems_checkpoint, tmp_path / "x", quantization="int4")


def test_a_non_empty_out_needs_force_and_is_replaced_whole(tiny_poems_checkpoint, tmp_path):
    from export.model_dir import ExportError
    out = tmp_path / "ct2"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(ExportError, match="--force"):
        convert_to_ctranslate2(tiny_poems_checkpoint, out, check_prompts=2, check_beam=False)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    convert_to_ctranslate2(tiny_poems_checkpoint, out, check_prompts=2, check_beam=False, force=True)
    assert (out / REPORT_NAME).exists() and not (out / "mine.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ct2"]
