"""FaceGenerator's bounds: seeds, counts and memory checked before work, a graph's output checked after it runs."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from genrt import limits
from genrt.contract import FacesManifest
from genrt.faces import FaceGenerator
from genrt.runtime import GRAPH_RUN_ERRORS, GraphRunError

MANIFEST = FacesManifest(nz=4, image_size=2)


class FakeSession:
    """Stands in for onnxruntime: returns `shape_of(batch)` uint8 images, or raises `error`."""

    def __init__(self, shape_of=lambda b: (b, 2, 2, 3), dtype=np.uint8, error=None):
        self.shape_of, self.dtype, self.error, self.calls = shape_of, dtype, error, 0

    def run(self, names, feeds):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return [np.zeros(self.shape_of(len(feeds["z"])), dtype=self.dtype)]


def generator(**session) -> FaceGenerator:
    return FaceGenerator(MANIFEST, FakeSession(**session), Path("."), "cpu")


@pytest.mark.parametrize("seed", [-1, -(2**70), 2**63, 1.5, 2.0, "3", True, [1], np.float32(1)])
def test_a_bad_seed_is_named(seed):
    with pytest.raises(ValueError, match="seed must be an integer from 0 to"):
        generator().generate(2, seed=seed)


@pytest.mark.parametrize("seed", [None, 0, 2**40, np.int64(5)])
def test_good_seeds(seed):
    assert generator().generate(2, seed=seed).shape == (2, 2, 2, 3)


@pytest.mark.parametrize("call", [
    lambda g: g.generate(10**12), lambda g: g.generate(limits.MAX_IMAGES + 1),
    lambda g: next(g.iter_batches(10**12)), lambda g: next(g.iter_interpolation(10**12)),
    lambda g: g.interpolate(10**9), lambda g: g.latents(10**12),
    lambda g: next(g.iter_batches(4, batch_size=10**9)), lambda g: g.generate_from_latents(np.zeros((2, 4)), 10**6),
])
def test_sizes_over_the_budget_are_refused_before_any_work(call):
    g = generator()
    started = time.perf_counter()
    with pytest.raises(limits.ResourceError):
        call(g)
    assert g._session.calls == 0 and time.perf_counter() - started < 1


@pytest.mark.parametrize("z, words", [
    (np.full((2, 4), np.nan), "finite"), (np.full((2, 4), np.inf), "finite"), (np.full((1, 4), 1e39), "finite"),
    (np.zeros((2, 4), complex), "real numbers"), (np.array([["a"] * 4]), "real numbers"),
])
def test_latents_that_are_not_finite_real_numbers_are_refused(z, words):
    g = generator()
    with pytest.raises(ValueError, match=words):
        g.generate_from_latents(z)
    assert g._session.calls == 0


def test_in_memory_images_are_bounded_by_bytes_not_only_by_count():
    big = FaceGenerator(FacesManifest(nz=4, image_size=4096, channels=4), FakeSession(), Path("."), "cpu")
    with pytest.raises(limits.ResourceError, match="GiB"):
        big.generate(1000)


def test_interpolation_streams_without_building_every_frame_fraction():
    g = generator()
    frames = g.iter_interpolation(limits.MAX_IMAGES, batch_size=8)
    assert next(frames).shape == (8, 2, 2, 3)


def test_streamed_interpolation_equals_the_whole_one():
    g = FaceGenerator(MANIFEST, type("Echo", (), {"run": lambda self, n, f: [
        (np.abs(f["z"][:, :1, None, None]) * 50).astype(np.uint8).repeat(2, 1).repeat(2, 2).repeat(3, 3)]})(),
        Path("."), "cpu")
    whole = g.interpolate(37, seed=3, batch_size=64)
    parts = np.concatenate(list(g.iter_interpolation(37, seed=3, batch_size=5)))
    assert np.array_equal(whole, parts)


@pytest.mark.parametrize("shape_of, dtype", [
    (lambda b: (max(b - 1, 0), 2, 2, 3), np.uint8),   # fewer images than latents
    (lambda b: (b + 1, 2, 2, 3), np.uint8),           # more
    (lambda b: (b, 3, 2, 3), np.uint8),               # another size
    (lambda b: (b, 2, 2, 3), np.float32),             # another dtype
])
def test_a_graph_that_returns_other_images_than_asked_is_an_error(shape_of, dtype):
    with pytest.raises(GraphRunError, match="for 4 latents"):
        generator(shape_of=shape_of, dtype=dtype).generate(4)


def test_a_graph_that_fails_while_running_is_one_error():
    error = GRAPH_RUN_ERRORS[0]("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code\nstack line")
    with pytest.raises(GraphRunError, match="generator.onnx failed: .*FAIL") as info:
        generator(error=error).generate(2)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("model_dir", [123, 1.5, b"bytes", ["a"], "", "  "])
def test_load_names_a_model_dir_that_is_not_a_path(model_dir):
    with pytest.raises(ValueError, match="model_dir must be a directory path"):
        FaceGenerator.load(model_dir)
