"""genrt.faces.generator: the onnxruntime-only API and manifest validation."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from genrt.contract import MANIFEST_NAME, ManifestError
from genrt.faces import FaceGenerator, interpolate_latents
from genrt.faces.generator import candidate_count
from genrt.limits import MAX_IMAGES, ResourceError


@pytest.fixture(scope="module")
def faces(tiny_faces_model) -> FaceGenerator:
    return FaceGenerator.load(tiny_faces_model, provider="cpu", threads=1)


def edit_manifest(model_dir, **changes) -> None:
    """Rewrite manifest.json with fields changed; a value of None removes the field."""
    path = model_dir / MANIFEST_NAME
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------- generation

def test_generate_shape_and_dtype(faces):
    images = faces.generate(3, seed=0)
    assert images.shape == (3, 64, 64, 3) and images.dtype == np.uint8
    assert faces.provider == "cpu" and faces.nz == faces.manifest.nz


def test_same_seed_same_images_and_different_seeds_differ(faces):
    assert np.array_equal(faces.generate(4, seed=11), faces.generate(4, seed=11))
    assert not np.array_equal(faces.generate(4, seed=11), faces.generate(4, seed=12))
    first, second = faces.generate(2, seed=5)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batching_does_not_change_the_images(faces, batch_size):
    one_batch = faces.generate(7, seed=3, batch_size=64)
    assert np.array_equal(faces.generate(7, seed=3, batch_size=batch_size), one_batch)
    assert np.array_equal(np.concatenate(list(faces.iter_batches(7, seed=3, batch_size=batch_size))), one_batch)


def test_generate_matches_generate_from_latents(faces):
    z = faces.latents(5, seed=9)                                       # (5, nz)
    assert z.shape == (5, faces.nz) and z.dtype == np.float32
    assert np.array_equal(faces.generate_from_latents(z, batch_size=2), faces.generate(5, seed=9))


def test_progress_callback_counts_every_image(faces):
    counts = []
    faces.generate(10, seed=0, batch_size=4, progress=counts.append)
    assert counts == [4, 4, 2]


def test_generate_is_thread_safe(faces):
    expected = {seed: faces.generate(6, seed=seed, batch_size=2) for seed in range(4)}
    results = {}

    def work(seed):
        results[seed] = faces.generate(6, seed=seed, batch_size=2)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(results[s], expected[s]) for s in expected)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_bad_counts_raise_value_error(faces, bad):
    with pytest.raises(ValueError, match="positive integer"):
        faces.generate(bad)


def test_wrong_latent_shape_is_named(faces):
    with pytest.raises(ValueError, match=rf"\(batch >= 1, {faces.nz}\)"):
        faces.generate_from_latents(np.zeros((2, faces.nz + 1), np.float32))


# ---------------------------------------------------------------- interpolation

@pytest.mark.parametrize("mode", ["slerp", "lerp"])
def test_interpolate_runs_from_one_latent_to_the_other(faces, mode):
    frames = faces.interpolate(5, seed=2, mode=mode)
    assert frames.shape == (5, 64, 64, 3) and frames.dtype == np.uint8
    start, end = faces.generate_from_latents(faces.latents(2, seed=2))
    assert np.array_equal(frames[0], start) and np.array_equal(frames[-1], end)


def test_truncation_scales_latents_toward_the_mean(faces):
    z = faces.latents(4, seed=5)
    assert np.allclose(faces.latents(4, seed=5, truncation=0.5), 0.5 * z)
    assert np.array_equal(faces.generate(3, seed=5, truncation=0.7),
                          faces.generate_from_latents(faces.latents(3, seed=5, truncation=0.7)))
    assert np.array_equal(faces.generate(3, seed=5, truncation=1.0), faces.generate(3, seed=5))


@pytest.mark.parametrize("psi", [0.0, -0.5, 1.01, float("nan"), float("inf"), "0.5", True])
def test_bad_truncation_is_named(faces, psi):
    with pytest.raises(ValueError, match="truncation"):
        faces.generate(1, seed=0, truncation=psi)


def test_streamed_interpolation_equals_the_whole_path(faces):
    whole = faces.interpolate(9, seed=4, batch_size=64)
    streamed = list(faces.iter_interpolation(9, seed=4, batch_size=4))
    assert [len(b) for b in streamed] == [4, 4, 1]
    assert np.array_equal(np.concatenate(streamed), whole)
    assert np.array_equal(whole[[0, -1]], faces.generate_from_latents(faces.latents(2, seed=4)))


def test_slerp_keeps_latent_norm_between_equal_norm_ends():
    a, b = np.zeros(8, np.float32), np.zeros(8, np.float32)
    a[0], b[1] = 3.0, 3.0                                               # orthogonal, same norm
    path = interpolate_latents(a, b, 5, "slerp")                       # (5, 8)
    assert np.allclose(np.linalg.norm(path, axis=1), 3.0, atol=1e-5)
    assert np.allclose(interpolate_latents(a, b, 3, "lerp")[1], (a + b) / 2)
    assert np.allclose(interpolate_latents(a, a, 3, "slerp"), a)      # parallel ends do not divide by zero
    with pytest.raises(ValueError, match="unknown interpolation mode"):
        interpolate_latents(a, b, 3, "cubic")


# ---------------------------------------------------------------- filtering by the discriminator

def test_filter_keeps_the_faces_the_discriminator_rates_highest_in_drawn_order(faces):
    assert faces.can_filter
    drawn = faces.generate(10, seed=21)                                 # ceil(5 / 0.5) candidates
    scores = faces.realness(drawn)                                      # (10,)
    kept = faces.generate(5, seed=21, keep=0.5)
    best = np.sort(np.argsort(-scores, kind="stable")[:5])              # the top half, in the order drawn
    assert np.array_equal(kept, drawn[best])
    assert not np.array_equal(kept, drawn[:5])                          # the filter chose, not the first five


@pytest.mark.parametrize("batch_size", [1, 2, 3, 64])
def test_filtered_batches_are_full_and_join_into_generate(faces, batch_size):
    whole = faces.generate(7, seed=4, keep=0.6, batch_size=64)
    streamed = list(faces.iter_batches(7, seed=4, keep=0.6, batch_size=batch_size))
    assert [len(b) for b in streamed] == [batch_size] * (7 // batch_size) + ([7 % batch_size] if 7 % batch_size
                                                                              else [])
    assert np.array_equal(np.concatenate(streamed), whole)


def test_filter_without_a_seed_keeps_n_faces_and_keep_1_is_no_filter(faces):
    assert faces.generate(3, keep=0.5).shape == (3, 64, 64, 3)
    assert np.array_equal(faces.generate(4, seed=8, keep=1.0), faces.generate(4, seed=8))


def test_realness_is_per_face_and_checks_its_input(faces):
    images = faces.generate(6, seed=2)
    scores = faces.realness(images, batch_size=4)
    assert scores.shape == (6,) and scores.dtype == np.float32
    assert np.allclose(scores[2:4], faces.realness(images[2:4]), rtol=1e-5, atol=1e-5)
    for bad in (images.astype(np.float32), images[:, :32], images[:0]):
        with pytest.raises(ValueError, match="faces must be uint8 of shape"):
            faces.realness(bad)


@pytest.mark.parametrize("keep", [0.0, -0.5, 1.5, float("nan"), "0.5", True])
def test_bad_keep_is_named(faces, keep):
    with pytest.raises(ValueError, match="keep"):
        faces.generate(1, seed=0, keep=keep)


def test_candidates_are_rounded_sensibly_and_bounded():
    assert candidate_count(3, 0.3) == 10 and candidate_count(16, 0.5) == 32 and candidate_count(5, 0.6) == 9
    assert candidate_count(1, 1.0) == 1
    with pytest.raises(ResourceError, match="faces drawn to keep"):
        candidate_count(MAX_IMAGES, 0.5)
    for subnormal in (1e-310, 5e-324):                 # n / keep overflows to infinity
        with pytest.raises(ResourceError, match="faces drawn to keep 1 of them"):
            candidate_count(1, subnormal)


def test_a_model_without_its_discriminator_cannot_filter(model_copy):
    (model_copy / "discriminator.onnx").unlink()
    edit_manifest(model_copy, discriminator_file="", graphs=None)
    plain = FaceGenerator.load(model_copy, provider="cpu", threads=1)
    assert not plain.can_filter
    assert plain.generate(2, seed=1).shape == (2, 64, 64, 3)
    for call in (lambda: plain.generate(2, seed=1, keep=0.5), lambda: plain.realness(plain.generate(1, seed=1))):
        with pytest.raises(ValueError, match="has no discriminator graph"):
            call()


def test_a_missing_or_broken_discriminator_is_named(model_copy):
    (model_copy / "discriminator.onnx").unlink()
    with pytest.raises(ManifestError, match="missing graph file discriminator.onnx"):
        FaceGenerator.load(model_copy)
    (model_copy / "discriminator.onnx").write_bytes(b"not a graph")
    with pytest.raises(ManifestError, match="cannot load discriminator.onnx"):
        FaceGenerator.load(model_copy)


# ---------------------------------------------------------------- manifest and graph validation

def test_missing_manifest(model_copy):
    (model_copy / MANIFEST_NAME).unlink()
    with pytest.raises(ManifestError, match="missing manifest.json"):
        FaceGenerator.load(model_copy)


def test_missing_directory(tmp_path):
    with pytest.raises(ManifestError, match="no such directory"):
        FaceGenerator.load(tmp_path / "nowhere")


def test_invalid_json(model_copy):
    (model_copy / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        FaceGenerator.load(model_copy)


def test_wrong_version_and_wrong_kind_are_reported_together(model_copy):
    edit_manifest(model_copy, format_version=99, kind="poems-transformer")
    with pytest.raises(ManifestError) as info:
        FaceGenerator.load(model_copy)
    assert len(info.value.problems) == 2
    assert "format_version is 99" in str(info.value) and "expected 'faces-dcgan'" in str(info.value)


def test_wrong_version_and_missing_field_are_reported_together(model_copy):
    edit_manifest(model_copy, format_version=99, nz=None)
    with pytest.raises(ManifestError) as info:
        FaceGenerator.load(model_copy)
    assert "format_version is 99" in str(info.value) and "missing field 'nz'" in str(info.value)


def test_bad_value_and_missing_graph_are_reported_together(model_copy):
    edit_manifest(model_copy, image_size=-1)
    (model_copy / "generator.onnx").unlink()
    with pytest.raises(ManifestError) as info:
        FaceGenerator.load(model_copy)
    assert "image_size must be a positive integer" in str(info.value)
    assert "missing graph file generator.onnx" in str(info.value)


def test_missing_graph_file(model_copy):
    (model_copy / "generator.onnx").unlink()
    with pytest.raises(ManifestError, match="missing graph file generator.onnx"):
        FaceGenerator.load(model_copy)


def test_corrupt_graph(model_copy):
    (model_copy / "generator.onnx").write_bytes(b"this is not an onnx model")
    with pytest.raises(ManifestError, match="cannot load generator.onnx"):
        FaceGenerator.load(model_copy)


def test_graph_that_breaks_the_contract_is_named(model_copy):
    nz = json.loads((model_copy / MANIFEST_NAME).read_text())["nz"]
    edit_manifest(model_copy, nz=nz + 1, image_size=32)                # the graph says otherwise
    with pytest.raises(ManifestError) as info:
        FaceGenerator.load(model_copy)
    message = str(info.value)
    assert "input 'z' has shape" in message and "output 'images' has shape" in message
