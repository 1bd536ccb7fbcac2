"""benchmarks.faces_c2st: the degradations and the classifier two-sample test on synthetic sets."""
import numpy as np
import pytest

pytest.importorskip("torch")

from benchmarks import faces_c2st  # noqa: E402


def faces(seed, count=400):
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, (count, 1, 1, 3))
    return np.clip(base + rng.normal(0, 20, (count, 64, 64, 3)), 0, 255).astype(np.uint8)


def test_degradations_keep_shape_and_type():
    x = faces(0, 4)
    for out in (faces_c2st.jpeg(x, 30), faces_c2st.noise(x, 8.0), faces_c2st.blur(x, 1.0)):
        assert out.shape == x.shape and out.dtype == np.uint8 and not np.array_equal(out, x)
    assert np.array_equal(faces_c2st.noise(x, 4.0, seed=1), faces_c2st.noise(x, 4.0, seed=1))


def test_same_sets_score_near_chance_and_an_obvious_difference_far_below():
    same = faces_c2st.c2st(faces(1), faces(2), seed=0, steps=150)
    blurred = faces_c2st.c2st(faces(1), faces_c2st.blur(faces(2), 2.0), seed=0, steps=150)
    assert abs(same["xent"] - np.log(2)) < 0.15 and 0.3 <= same["accuracy"] <= 0.7
    assert blurred["xent"] < same["xent"] - 0.2 and blurred["accuracy"] > 0.8


def test_markdown_rows():
    report = {"steps": 10, "seeds": 2, "model": "bundled", "date": "2026-01-01",
              "rows": [{"set": "real", "xent_mean": 0.69, "xent_std": 0.01, "accuracy_mean": 0.51}]}
    assert "| real | 0.690 ± 0.010 | 51.0% |" in faces_c2st.markdown(report)
