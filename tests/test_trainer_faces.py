"""trainers.faces: dry run on synthetic images, unreadable files skipped, exact resume."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from trainers.common import load_checkpoint
from trainers.faces import FacesConfig, load_faces, load_generator, main, train

torch.set_num_threads(1)
TINY = dict(nz=16, ngf=8, ndf=8, threads=1, device="cpu", seed=3)


@pytest.fixture
def faces_with_a_broken_file(tmp_path, synthetic_faces_dir) -> Path:
    folder = Path(shutil.copytree(synthetic_faces_dir, tmp_path / "faces"))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    (folder / "notes.txt").write_text("not an image extension, ignored")
    return folder


def test_unreadable_files_are_skipped_and_counted(faces_with_a_broken_file):
    images, skipped = load_faces(faces_with_a_broken_file, 64)
    assert images.shape == (8, 3, 64, 64) and images.dtype == torch.uint8
    assert skipped == 1


def test_dry_run_writes_a_checkpoint_that_holds_its_config(faces_with_a_broken_file, tmp_path, capsys):
    out = tmp_path / "run"
    main(["--dry-run", "--data", str(faces_with_a_broken_file), "--out", str(out),
          "--nz", "16", "--ngf", "8", "--ndf", "8", "--threads", "1", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert "faces: 8 images" in printed and "(1 unreadable, skipped)" in printed
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["kind"] == "faces-dcgan" and state["step"] == 3
    assert state["config"]["ngf"] == 8 and state["config"]["dry_run"] is True
    generator, cfg, _ = load_generator(out / "checkpoint.pt")
    assert (cfg.nz, cfg.ngf) == (16, 8) and not generator.training
    assert list((out / "samples").glob("step_*.png"))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["generator"]


def test_resume_reproduces_an_uninterrupted_run(synthetic_faces_dir, tmp_path):
    common = dict(data=str(synthetic_faces_dir), batch_size=4, checkpoint_every=2, sample_every=1000, **TINY)
    straight = train(FacesConfig(out=str(tmp_path / "straight"), steps=4, **common))
    halfway = weights(train(FacesConfig(out=str(tmp_path / "resumed"), steps=2, **common)))
    resumed = train(FacesConfig(out=str(tmp_path / "resumed"), steps=4, resume=True, **common))
    assert load_checkpoint(resumed)["step"] == 4
    a, b = weights(straight), weights(resumed)
    assert not torch.equal(a["net.0.weight"], halfway["net.0.weight"])  # steps 3-4 really trained
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
