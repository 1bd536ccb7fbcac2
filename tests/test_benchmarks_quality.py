"""benchmarks.quality: thumbnail features, the Fréchet distance, the validation pairs and the quality report."""
import json

import numpy as np

from benchmarks.quality import frechet_distance, thumbnail_features, validation_pairs, write_report
from trainers.poems_corpus import pack


def test_thumbnail_features_average_8x8_blocks_per_channel():
    images = np.zeros((2, 64, 64, 3), np.uint8)
    images[0] = 255
    images[1, :8, :8, 0] = 255                                            # top-left block, red
    images[1, :8, 8:16, 2] = 51                                           # the block to its right, blue, 0.2
    features = thumbnail_features(images)                                 # (2, 192)
    assert features.shape == (2, 192)
    assert np.allclose(features[0], 1.0)
    expected = np.zeros(192)
    expected[0], expected[5] = 1.0, 0.2                                   # (row * 8 + col) * 3 + channel
    assert np.allclose(features[1], expected)


def test_frechet_distance_of_shifted_and_scaled_sets():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 4))
    a -= a.mean(0)
    assert abs(frechet_distance(a, a)) < 1e-9
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    assert np.isclose(frechet_distance(a, a + shift), (shift ** 2).sum())   # same covariance: the mean term only
    # b = 2a: tr(C) + tr(4C) - 2 tr(sqrt(4 C^2)) = tr(C)
    assert np.isclose(frechet_distance(a, 2 * a), np.trace(np.cov(a, rowvar=False)))


def write_cache(folder, val_src, val_tgt, vocab):
    folder.mkdir()
    arrays = {}
    for name, seqs in (("val_src", val_src), ("val_tgt", val_tgt), ("train_src", []), ("train_tgt", [])):
        arrays[name], arrays[f"{name}_offsets"] = pack(seqs)
    np.savez(folder / "corpus.npz", **arrays)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "stats.json").write_text("{}", encoding="utf-8")
    return folder


def test_validation_pairs_are_the_first_pairs_of_the_cache(tmp_path):
    vocab = ["<pad>", "<sos>", "<eos>", "<unk>", "<title>", "<first>", "a", "b", "c"]
    cache = write_cache(tmp_path / "cache", [[4, 6], [4, 7, 8], [5, 6]], [[6, 7, 8], [8], [7, 7]], vocab)
    sources, targets, got_vocab = validation_pairs(str(cache), 2)
    assert sources == [[4, 6], [4, 7, 8]] and targets == [[6, 7, 8], [8]] and got_vocab == vocab
    sources, targets, _ = validation_pairs(str(cache), 10)
    assert len(sources) == len(targets) == 3 and targets[-1] == [7, 7]
    assert validation_pairs(str(cache), 0)[:2] == validation_pairs(str(cache), 10)[:2]        # 0: every pair


def test_poems_quality_scores_every_pair_and_compares_greedy_on_the_first_ones(tiny_poems_dir, tmp_path):
    from benchmarks.quality import poems_quality
    from tests.fixtures_poems import TINY_VOCAB
    title, chars = TINY_VOCAB.index("<title>"), [TINY_VOCAB.index(c) for c in "春江花月夜山水风云"]
    cache = write_cache(tmp_path / "cache", [[title, chars[i]] for i in range(5)],
                        [chars[i:i + 4] for i in range(5)], TINY_VOCAB)
    result = poems_quality(str(tiny_poems_dir), str(tiny_poems_dir), str(cache), count=0, greedy_count=3)
    assert result["validation_pairs"] == 5 and result["validation_tokens"] == 5 * (4 + 1)      # + <eos>
    assert result["greedy_prompts"] == 3 and result["greedy_identical"] == 1.0
    assert result["ppl_variant"] == result["ppl_fp32"] and result["ppl_change"] == 0.0 and result["passes"]


def test_report_lists_each_measure_with_its_gate(tmp_path):
    results = [{"model": "faces", "precision": "int8", "images": 64, "mean_abs_pixel_diff": 1.234,
                "max_abs_pixel_diff": 17, "frechet_vs_fp32": 0.00123, "frechet_fp32_noise_floor": 0.002,
                "passes": True},
               {"model": "poems", "precision": "int8", "validation_pairs": 3846, "validation_tokens": 209161,
                "ppl_fp32": 10.0, "ppl_variant": 10.3, "ppl_change": 0.03, "greedy_prompts": 200,
                "greedy_identical": 0.875, "passes": False}]
    write_report(results, tmp_path / "out")
    lines = (tmp_path / "out" / "quality.md").read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["| model | variant | measure | value | gate | passes |", "|---|---|---|---|---|---|"]
    assert lines[2:] == [
        "| faces | int8 | mean abs pixel diff (0-255) on 64 latents | 1.23 (max 17) | report | |",
        "| faces | int8 | Fréchet distance to fp32 (thumbnail features) | 0.0012 | <= fp32 noise floor 0.0020 | yes |",
        "| poems | int8 | validation perplexity (3,846 pairs, 209,161 tokens, <eos> included) | 10.30 vs fp32 10.00 "
        "(+3.00%) | within 2% | no |",
        "| poems | int8 | identical greedy outputs (200 prompts) | 87.5% | report | |"]
    assert json.loads((tmp_path / "out" / "quality.json").read_text(encoding="utf-8")) == results
