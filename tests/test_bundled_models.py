"""The models shipped in the package load, pass the contract check and generate (skipped if not shipped)."""
import json

import pytest

from genrt import FaceGenerator, PoemGenerator
from genrt.contract import read_manifest
from genrt.runtime import bundled_model_dir

pytestmark = pytest.mark.skipif(not bundled_model_dir("faces").is_dir(), reason="no bundled models")


@pytest.mark.parametrize("precision", [None, "fp32", "int8"])
def test_bundled_faces(precision):
    faces = FaceGenerator.load(provider="cpu", threads=1, precision=precision)
    images = faces.generate(2, seed=0)
    assert images.shape == (2, 64, 64, 3) and images.std() > 10
    assert "non-commercial" in faces.manifest.data_licence
    assert faces.manifest.precision == (precision or "int8")


def test_bundled_faces_int8_stays_close_to_fp32():
    fp32 = FaceGenerator.load(provider="cpu", threads=1, precision="fp32").generate(8, seed=3).astype(int)
    int8 = FaceGenerator.load(provider="cpu", threads=1, precision="int8").generate(8, seed=3).astype(int)
    assert abs(fp32 - int8).mean() < 4.0  # uint8 levels; benchmarks/quality.py measures it over 1,024 latents


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_bundled_poems(precision):
    gen = PoemGenerator.load(provider="cpu", threads=1, precision=precision)
    poem = gen.generate("春江花月夜", form="wujue")[0]
    assert poem.finished and len(poem.text) == 24
    assert gen.manifest.metrics["ppl"] < 200


def test_bundled_poem_export_report():
    report = json.loads((bundled_model_dir("poems") / "export_report.json").read_text())
    assert report["max_abs_logit_diff"] <= 1e-4 and report["greedy_identical"] == report["prompts"] >= 20
    assert read_manifest(bundled_model_dir("poems_int8")).precision == "int8"


def test_bundled_poems_were_trained_with_form_tokens():
    gen = PoemGenerator.load(provider="cpu", threads=1)
    assert set(gen.tokenizer.form_ids) == {"wujue", "qijue", "wulv", "qilv"}
    from genrt.poems.verse.forms import well_formed
    poem = gen.generate("春江", form="qijue")[0]
    assert well_formed(poem.text, form="qijue")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_bundled_poems_do_not_depend_on_the_thread_count(precision):
    """Poem models now default to one thread per physical core: the poems and their scores must be the same as
    with one thread (onnxruntime splits the work by rows and columns, never inside a sum)."""
    one, two = (PoemGenerator.load(precision=precision, provider="cpu", threads=t) for t in (1, 2))
    for options in ({"do_sample": False}, {"num_beams": 4, "do_sample": False}, {"do_sample": True, "seed": 3}):
        a, b = one.generate(["登高", "春江花月夜"], **options), two.generate(["登高", "春江花月夜"], **options)
        assert [(p[0].text, p[0].score) for p in a] == [(p[0].text, p[0].score) for p in b]
