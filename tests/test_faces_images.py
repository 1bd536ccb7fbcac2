"""genrt.faces.images: image file names, atomic link-safe PNGs, earlier outputs and grids."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from PIL import Image

from genrt.faces import FaceGenerator
from genrt.faces.images import image_names, make_grid, own_files, save_grid, save_images, save_png


@pytest.fixture(scope="module")
def faces(tiny_faces_model) -> FaceGenerator:
    return FaceGenerator.load(tiny_faces_model, provider="cpu", threads=1)


def test_saved_pngs_are_byte_identical_for_the_same_seed(faces, tmp_path):
    first = save_images(faces.generate(3, seed=4), tmp_path / "a")
    second = save_images(faces.generate(3, seed=4), tmp_path / "b")
    assert [p.name for p in first] == ["face_0000.png", "face_0001.png", "face_0002.png"]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_image_names_widen_for_large_counts():
    assert image_names(2) == ["face_0000.png", "face_0001.png"]
    assert image_names(1, start=12345, total=20000) == ["face_12345.png"]
    assert image_names(1, prefix="frame", start=3, total=100000) == ["frame_00003.png"]


def test_make_grid_layout(tmp_path):
    images = np.stack([np.full((4, 4, 3), i * 40, np.uint8) for i in range(1, 6)])  # (5, 4, 4, 3)
    grid = make_grid(images, padding=1)                                 # 3 columns, 2 rows
    assert grid.shape == (2 * 4 + 3, 3 * 4 + 4, 3)
    assert grid[1, 1, 0] == 40 and grid[6, 1, 0] == 160 and grid[6, 11, 0] == 0  # last cell is empty
    assert make_grid(images, nrow=5, padding=0).shape == (4, 20, 3)
    path = save_grid(images, tmp_path / "sub" / "grid.png")
    assert path.is_file()
    with pytest.raises(ValueError):
        make_grid(np.zeros((0, 4, 4, 3), np.uint8))


def test_save_images_numbers_a_later_batch_from_start(tmp_path):
    images = np.zeros((2, 4, 4, 3), np.uint8)
    images[1] = 200
    paths = save_images(images, tmp_path / "new", prefix="frame", start=9998, total=10001)
    assert [p.name for p in paths] == ["frame_09998.png", "frame_09999.png"]
    with Image.open(paths[1]) as im:
        assert im.size == (4, 4) and np.array_equal(np.asarray(im), images[1])


def test_save_png_replaces_a_link_instead_of_following_it(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    link = tmp_path / "face_0000.png"
    link.symlink_to(target)
    save_png(np.full((2, 3, 3), 7, np.uint8), link)
    assert target.read_text() == "keep me" and not link.is_symlink()
    with Image.open(link) as im:
        assert im.size == (3, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.txt", "face_0000.png"]   # no temporary left


def test_a_failed_save_leaves_no_temporary_file(tmp_path):
    with pytest.raises(TypeError):
        save_png(np.zeros((2, 2, 7), np.uint8), tmp_path / "face_0000.png")        # 7 channels: not an image
    assert list(tmp_path.iterdir()) == []


def test_own_files_are_the_names_genrt_faces_writes(tmp_path):
    assert own_files(tmp_path / "missing") == []
    for name in ("face_0000.png", "frame_12345.png", "grid.png", "face_001.png", "face_0000.jpg", "notes.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "face_0001.png").symlink_to(tmp_path / "nowhere")                  # a dangling link counts too
    (tmp_path / "face_0002.png").mkdir()                                           # a folder does not
    assert [p.name for p in own_files(tmp_path)] == ["face_0000.png", "face_0001.png", "frame_12345.png", "grid.png"]


def test_grid_refuses_images_of_the_wrong_rank():
    with pytest.raises(ValueError, match=r"images must have shape \(N >= 1, H, W, C\), got \(4, 4, 3\)"):
        make_grid(np.zeros((4, 4, 3), np.uint8))


def test_saved_pngs_get_ordinary_file_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_png(np.zeros((4, 4, 3), np.uint8), tmp_path / "face_0000.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644        # readable by others, as `cp` or PIL would leave it
