"""Faces fixtures: a tiny checkpoint written by the real trainer, and its exported model directory.

Loaded through `pytest_plugins` in tests/conftest.py. Session-scoped, so the (sub-second) training and export run
once for the whole test run. Nothing here depends on the bundled genrt/models/faces, which may not exist yet."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY_NZ, TINY_NGF, TINY_NDF = 16, 8, 8


def write_synthetic_faces(folder: Path, count: int = 8, seed: int = 0) -> Path:
    """`count` random-pixel JPEGs of assorted non-square sizes (the trainer centre-crops and resizes them)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        h, w = 40 + 4 * i, 48 + 2 * i
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"face_{i:02d}.jpg")
    return folder


def tiny_config(data: Path, out: Path, **overrides):
    """A FacesConfig small enough to train in well under a second on one thread."""
    from trainers.faces import FacesConfig

    settings = dict(data=str(data), out=str(out), nz=TINY_NZ, ngf=TINY_NGF, ndf=TINY_NDF, batch_size=4, steps=2,
                    checkpoint_every=2, sample_every=1000, threads=1, device="cpu", seed=7, holdout=0,
                    snapshot_every=0)
    settings.update(overrides)
    return FacesConfig(**settings)


def recalibrate_batchnorm(checkpoint: Path, batches: int = 4, seed: int = 0) -> Path:
    """Re-estimate the generator's BatchNorm running statistics in place.

    After two training steps the running stats still hold their init values (mean 0, var 1), so in eval mode the
    net shrinks its signal to ~0 and every image is flat grey. Real statistics make the tiny model's images vary
    the way a trained model's do. Only tensor values change; the checkpoint keeps the trainer's exact format."""
    import torch
    from trainers.common import load_checkpoint, save_checkpoint
    from trainers.faces import load_generator

    generator, cfg, _ = load_generator(checkpoint)
    for module in generator.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None                                   # cumulative average over the batches
    noise = torch.Generator().manual_seed(seed)
    generator.train()
    with torch.no_grad():
        for _ in range(batches):
            generator(torch.randn(16, cfg.nz, 1, 1, generator=noise))  # (B, nz, 1, 1)
    state = load_checkpoint(checkpoint)
    state["generator"] = generator.state_dict()
    save_checkpoint(checkpoint, state)
    return checkpoint


@pytest.fixture(scope="session")
def synthetic_faces_dir(tmp_path_factory) -> Path:
    return write_synthetic_faces(tmp_path_factory.mktemp("celeba_like"))


@pytest.fixture(scope="session")
def tiny_faces_checkpoint(tmp_path_factory, synthetic_faces_dir) -> Path:
    """runs/faces/checkpoint.pt in miniature, written by trainers.faces.train itself (BatchNorm recalibrated)."""
    import torch
    from trainers.faces import train

    torch.set_num_threads(1)
    return recalibrate_batchnorm(train(tiny_config(synthetic_faces_dir, tmp_path_factory.mktemp("tiny_run"))))


@pytest.fixture(scope="session")
def tiny_faces_model(tmp_path_factory, tiny_faces_checkpoint) -> Path:
    """The tiny checkpoint exported by export.faces (fp32). Treat as read-only; copy it to modify."""
    from export.faces import export_faces

    out = tmp_path_factory.mktemp("models") / "faces"
    return export_faces(tiny_faces_checkpoint, out, batch_sizes=(1, 5), threads=1, log=lambda _: None)


@pytest.fixture
def model_copy(tmp_path, tiny_faces_model) -> Path:
    """A private copy of the tiny model directory that a test may break."""
    return Path(shutil.copytree(tiny_faces_model, tmp_path / "faces"))
