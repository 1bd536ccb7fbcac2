"""benchmarks.swd: the numpy SWD core on tiny synthetic sets, the diversity ratio and the colour statistics."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import swd as sw

SMALL = dict(patches_per_image=32, dirs_per_repeat=64, repeats=2)


def blob_images(n: int, seed: int) -> np.ndarray:
    """n (64, 64, 3) uint8 images with some of a face photo's structure: flat colour regions with edges (four
    random ellipses on a shaded background), one blur pass."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    out = np.empty((n, 64, 64, 3), np.float32)
    for i in range(n):
        img = np.broadcast_to(rng.uniform(-1, 1, 3).astype(np.float32), (64, 64, 3)).copy()
        img += (yy / 64 - 0.5)[..., None] * rng.uniform(-0.5, 0.5, 3).astype(np.float32)
        for _ in range(4):
            (cy, cx), (ry, rx) = rng.uniform(8, 56, 2), rng.uniform(5, 20, 2)
            img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1] = rng.uniform(-1, 1, 3)
        out[i] = img
    out = sw.gaussian_blur(np.clip(out, -1, 1))
    return np.round((out + 1) * 127.5).astype(np.uint8)


@pytest.fixture(scope="module")
def faces():
    return blob_images(64, seed=0)


def test_pyramid_shapes_and_constant_image():
    images = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    pyramid = sw.laplacian_pyramid(images)
    assert [p.shape for p in pyramid] == [(5, 64, 64, 3), (5, 32, 32, 3), (5, 16, 16, 3)]
    assert all(p.dtype == np.float32 for p in pyramid)
    # the coarsest level is the Gaussian level itself: the blurred, twice-halved image in [-1, 1]
    unit = sw.to_unit(images)
    np.testing.assert_allclose(pyramid[2], sw.pyr_down(sw.pyr_down(unit)), atol=1e-6)
    np.testing.assert_allclose(pyramid[1] + sw.pyr_up(pyramid[2]), sw.pyr_down(unit), atol=1e-5)
    # kernel sums to one: a constant image has zero Laplacian levels and keeps its value at the top
    flat = np.full((2, 64, 64, 3), 0.25, dtype=np.float32)
    lap = sw.laplacian_pyramid(flat)
    assert np.abs(lap[0]).max() < 1e-6 and np.abs(lap[1]).max() < 1e-6
    np.testing.assert_allclose(lap[2], 0.25, atol=1e-6)


def test_patches_and_normalisation():
    rng = np.random.default_rng(1)
    level = (rng.standard_normal((4, 16, 16, 3)) * [1.0, 5.0, 0.1] + [3.0, -2.0, 0.5]).astype(np.float32)
    patches = sw.extract_patches(level, 10, rng)
    assert patches.shape == (40, 7, 7, 3)
    # patch 0 of image 0 really is a 7x7 window of image 0
    found = any(np.array_equal(level[0, y:y + 7, x:x + 7], patches[0]) for y in range(10) for x in range(10))
    assert found
    desc = sw.normalize_descriptors(patches)
    assert desc.shape == (40, 147) and desc.dtype == np.float32
    per_channel = desc.reshape(-1, 3)                 # channel is the last axis of each 7x7x3 descriptor
    np.testing.assert_allclose(per_channel.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(per_channel.std(axis=0), 1.0, atol=1e-4)
    # a constant set does not divide by zero
    assert np.isfinite(sw.normalize_descriptors(np.ones((3, 7, 7, 3), np.float32))).all()


def test_sliced_wasserstein_subsamples_and_is_zero_on_identical_sets():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((500, 147)).astype(np.float32)
    assert sw.sliced_wasserstein(a, a[::-1].copy(), np.random.default_rng(0), 32, 2) == pytest.approx(0, abs=1e-6)
    b = rng.standard_normal((800, 147)).astype(np.float32) + 1.0
    d = sw.sliced_wasserstein(a, b, np.random.default_rng(0), 32, 2)
    assert d > 0.5     # a unit shift in every coordinate projects to about sqrt(147) * E|cos| >> 0.5


def test_swd_self_small_noise_large(faces):
    options = dict(SMALL, patches_per_image=64)                # 4096 descriptors per set and level
    other_draw = sw.swd(faces, faces, seed=0, **options)       # same images, different patch draws
    assert set(other_draw) == {"swd64", "swd32", "swd16", "avg"}
    noise = np.random.default_rng(5).integers(0, 256, faces.shape, dtype=np.uint8)
    vs_noise = sw.swd(faces, noise, seed=0, **options)
    assert vs_noise["avg"] >= 5 * other_draw["avg"], (other_draw, vs_noise)
    for key in ("swd64", "swd32", "swd16"):
        assert vs_noise[key] >= 4 * other_draw[key], (key, other_draw, vs_noise)
    # float input in [-1, 1] gives the same numbers as uint8
    again = sw.swd(faces, sw.to_unit(faces), seed=0, **options)
    assert again == pytest.approx(other_draw, rel=1e-5)


def test_diversity_and_channel_stats(faces):
    assert sw.diversity_ratio(faces, faces) == pytest.approx(1.0)
    assert sw.diversity_ratio(faces[:40], faces[20:]) == pytest.approx(1.0, abs=0.2)
    repeated = np.repeat(faces[:1], 30, axis=0)
    assert sw.mean_pairwise_distance(repeated) == pytest.approx(0.0, abs=1e-5)
    assert sw.diversity_ratio(repeated, faces) == pytest.approx(0.0, abs=1e-6)
    # pairwise distance equals the brute-force mean over i < j
    x = sw.to_unit(faces[:6]).reshape(6, -1).astype(np.float64)
    brute = np.mean([np.linalg.norm(x[i] - x[j]) for i in range(6) for j in range(i + 1, 6)])
    assert sw.mean_pairwise_distance(faces[:6]) == pytest.approx(brute, rel=1e-6)
    stats = sw.channel_stats(np.full((2, 4, 4, 3), 255, np.uint8))
    assert stats["mean"] == pytest.approx([1.0] * 3) and stats["std"] == pytest.approx([0.0] * 3)

