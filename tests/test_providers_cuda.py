"""The CUDA path on a GPU (`pytest -m cuda`; `python -m benchmarks.gpu_check` runs them): provider choice, IOBinding
with the poem cache on the device, fp32 and fp16 parity with the CPU provider, batch invariance. Skipped where
onnxruntime offers no CUDA provider."""
from __future__ import annotations

import numpy as np
import pytest

from genrt import FaceGenerator, PoemGenerator
from genrt.runtime import available_providers, resolve_provider

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif("cuda" not in available_providers(), reason="onnxruntime offers no CUDA provider")]

PROMPTS = ["春江", "明月光", "山水清风", "秋思"]
SEARCHES = [{"do_sample": False}, {"num_beams": 3, "do_sample": False}, {"do_sample": True, "seed": 4}]


def test_auto_chooses_cuda_and_the_session_runs_on_it(tiny_faces_model):
    assert resolve_provider("auto") == "cuda"
    gen = FaceGenerator.load(tiny_faces_model, threads=1)
    assert gen.provider == "cuda" and gen._session.get_providers()[0] == "CUDAExecutionProvider"


def test_provider_options_reach_cuda(tiny_faces_model):
    gen = FaceGenerator.load(tiny_faces_model, provider="CUDAExecutionProvider", provider_options={"device_id": 0})
    assert gen._session.get_provider_options()["CUDAExecutionProvider"]["device_id"] == "0"


def test_the_poem_cache_stays_on_the_device(tiny_poems_dir):
    from genrt.poems.model import PoemModel
    model = PoemModel.load(tiny_poems_dir, provider="cuda")
    assert model.device_cache
    cache = model.start([[5, 6, 7]])
    logits, cache = model.step(np.ones((1, 1), np.int64), cache)
    assert isinstance(logits, np.ndarray) and logits.shape == (1, len(model.manifest.vocab))
    assert all(x.device_name().lower() == "cuda" for x in cache.self_kv + cache.cross_kv)


def test_fp32_faces_match_the_cpu_provider(tiny_faces_model):
    cpu, cuda = (FaceGenerator.load(tiny_faces_model, provider=p, threads=1).generate(32, seed=2).astype(int)
                 for p in ("cpu", "cuda"))
    assert np.abs(cpu - cuda).max() <= 1


@pytest.mark.parametrize("options", SEARCHES)
def test_fp32_poems_match_the_cpu_provider(tiny_poems_dir, options):
    cpu, cuda = (PoemGenerator.load(tiny_poems_dir, provider=p, threads=1) for p in ("cpu", "cuda"))
    a, b = (g.generate(PROMPTS, max_new_tokens=16, **options) for g in (cpu, cuda))
    assert [[p.text for p in r] for r in a] == [[p.text for p in r] for r in b]
    assert np.allclose([p.score for r in a for p in r], [p.score for r in b for p in r], atol=1e-3)


def test_fp32_scores_match_the_cpu_provider(tiny_poems_dir):
    pairs = [("春江", "春江花月夜，明月上高山。"), ("明月", "明月光")]
    cpu, cuda = (PoemGenerator.load(tiny_poems_dir, provider=p, threads=1).score(*zip(*pairs)) for p in ("cpu", "cuda"))
    assert np.allclose([s.logprob for s in cpu], [s.logprob for s in cuda], atol=1e-3)


@pytest.fixture(scope="module")
def fp16_dirs(tiny_faces_model, tiny_poems_dir, tmp_path_factory):
    from export.fp16 import fp16_copy
    return (fp16_copy(tiny_faces_model, tmp_path_factory.mktemp("faces_fp16")),
            fp16_copy(tiny_poems_dir, tmp_path_factory.mktemp("poems_fp16")))


def test_fp16_faces_stay_close_to_fp32_on_the_cpu_provider(tiny_faces_model, fp16_dirs):
    fp32 = FaceGenerator.load(tiny_faces_model, provider="cpu", threads=1).generate(8, seed=1).astype(int)
    fp16 = FaceGenerator.load(fp16_dirs[0], provider="cuda", precision="fp16").generate(8, seed=1).astype(int)
    assert np.abs(fp32 - fp16).max() <= 3             # tests/test_export_fp16.py's bound, on CPU


def test_fp16_poem_scores_stay_close_to_fp32_on_the_cpu_provider(tiny_poems_dir, fp16_dirs):
    pairs = [("春江", "春江花月夜，明月上高山。"), ("明月", "明月光")]
    fp32 = PoemGenerator.load(tiny_poems_dir, provider="cpu", threads=1).score(*zip(*pairs))
    fp16 = PoemGenerator.load(fp16_dirs[1], provider="cuda", precision="fp16").score(*zip(*pairs))
    for a, b in zip(fp32, fp16):
        assert abs(a.logprob - b.logprob) <= 0.01 * abs(a.logprob) + 0.05


@pytest.mark.parametrize("options", SEARCHES)
def test_a_prompt_decodes_the_same_alone_or_in_a_batch_on_cuda(tiny_poems_dir, options):
    gen = PoemGenerator.load(tiny_poems_dir, provider="cuda")
    alone = [p.text for p in gen.generate("明月光", max_new_tokens=12, **options)]
    for batch in (["春江", "明月光"], ["明月光", "明月光", "山水清风"]):
        together = gen.generate(batch, max_new_tokens=12, **options)
        assert [p.text for p in together[batch.index("明月光")]] == alone
