"""benchmarks.faces_c2st: the degradations and the two classifier two-sample tests on synthetic sets."""
import numpy as np
import pytest

pytest.importorskip("torch")

from benchmarks import faces_c2st  # noqa: E402


def faces(seed, count=400):
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, (count, 1, 1, 3))
    return np.clip(base + rng.normal(0, 20, (count, 64, 64, 3)), 0, 255).astype(np.uint8)


def blobs(seed, count=400, centre=(24, 32)):
    """A dark disc ("an eye") on a light face, its centre jittered by 1 px, with pixel noise: structure in one place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    out = np.empty((count, 64, 64, 3), np.uint8)
    for i in range(count):
        cy, cx = np.array(centre) + rng.integers(-1, 2, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 36
        image = np.where(disc, 60.0, 190.0)[..., None] + rng.normal(0, 12, (64, 64, 3))
        out[i] = np.clip(image, 0, 255)
    return out


def test_degradations_keep_shape_and_type():
    x = faces(0, 4)
    for out in (faces_c2st.jpeg(x, 30), faces_c2st.noise(x, 8.0), faces_c2st.blur(x, 1.0), faces_c2st.warp(x, 2.0)):
        assert out.shape == x.shape and out.dtype == np.uint8 and not np.array_equal(out, x)
    assert np.array_equal(faces_c2st.noise(x, 4.0, seed=1), faces_c2st.noise(x, 4.0, seed=1))
    assert np.array_equal(faces_c2st.warp(x, 2.0, seed=1), faces_c2st.warp(x, 2.0, seed=1))


def test_warp_moves_features_by_about_its_strength():
    x = blobs(0, 64)
    shift = {}
    for pixels in (0.0, 1.0, 4.0):
        moved = faces_c2st.warp(x, pixels, seed=3)
        dark = moved[..., 0] < 125                                            # (N, 64, 64) the disc's pixels
        ys = np.array([np.nonzero(d)[0].mean() for d in dark])
        xs = np.array([np.nonzero(d)[1].mean() for d in dark])
        before = np.array([np.nonzero(d)[0].mean() for d in x[..., 0] < 125])
        shift[pixels] = np.mean(np.hypot(ys - before, xs - np.array([np.nonzero(d)[1].mean()
                                                                     for d in x[..., 0] < 125])))
    assert shift[0.0] < 0.05 and 0.3 < shift[1.0] < shift[4.0] and shift[4.0] > 2.0


def test_auc_counts_order_and_ties():
    assert faces_c2st.auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert faces_c2st.auc(np.array([0.0]), np.array([1.0])) == 0.0
    assert faces_c2st.auc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5


def test_texture_view_same_sets_near_chance_and_an_obvious_difference_far_below():
    same = faces_c2st.c2st(faces(1), faces(2), seed=0, steps=150)
    blurred = faces_c2st.c2st(faces(1), faces_c2st.blur(faces(2), 2.0), seed=0, steps=150)
    assert abs(same["xent"] - np.log(2)) < 0.15 and 0.3 <= same["balanced_accuracy"] <= 0.7
    assert blurred["xent"] < same["xent"] - 0.2 and blurred["balanced_accuracy"] > 0.8


def test_structure_view_sees_where_features_are_and_ignores_pixel_noise():
    real = blobs(1)
    same = faces_c2st.c2st(real, blobs(2), seed=0, view="structure")
    noisy = faces_c2st.c2st(real, faces_c2st.noise(blobs(2), 8.0), seed=0, view="structure")
    moved = faces_c2st.c2st(real, blobs(2, centre=(29, 32)), seed=0, view="structure")
    assert 0.35 < same["auc"] < 0.65 and 0.35 < noisy["auc"] < 0.65
    assert moved["auc"] > 0.95


def test_markdown_rows():
    view = {"xent": {"mean": 0.69, "sd": 0.01}, "accuracy": {"mean": 0.51, "sd": 0.0},
            "auc": {"mean": 0.503, "sd": 0.012}}
    report = {"steps": {"texture": 10, "structure": 5}, "seeds": 2, "model": "bundled", "date": "2026-01-01",
              "count": 4000,
              "rows": [{"set": "real", "texture": view, "structure": view}]}
    text = faces_c2st.markdown(report)
    assert "| real | 0.690 ± 0.010 (51.0%) | **0.503 ± 0.012** (0.690) |" in text and "seeds 0–1" in text
    assert "against 2,000 + 2,000 of each set" in text


def test_unknown_view_is_refused(capsys):
    with pytest.raises(SystemExit):
        faces_c2st.main(["--views", "colour"])
    assert "--views" in capsys.readouterr().err


def test_compare_entries_take_a_label_or_the_file_name():
    assert faces_c2st.compare_entry("R1, 22,000 steps=runs/x/step_022000.pt") == ("R1, 22,000 steps",
                                                                                 "runs/x/step_022000.pt")
    assert faces_c2st.compare_entry("runs/x/step_022000.pt") == ("step_022000.pt", "runs/x/step_022000.pt")
    with pytest.raises(ValueError):
        faces_c2st.compare_entry("label=")


def test_filter_rows_come_from_the_runtime_filter(tiny_faces_model, capsys):
    import genrt
    got = faces_c2st.generated(4, model=str(tiny_faces_model), seed=3, keep=0.5)
    want = genrt.FaceGenerator.load(tiny_faces_model, provider="cpu").generate(4, seed=3, keep=0.5)
    assert np.array_equal(got, want)
    with pytest.raises(ValueError, match="model directories only"):
        faces_c2st.generated(4, model="runs/x/step_022000.pt", keep=0.5)
    with pytest.raises(SystemExit):
        faces_c2st.main(["--filters", "0"])
    assert "--filters" in capsys.readouterr().err
