"""trainers.faces_critic: a critic trained on a tiny exported generator's faces, its checkpoint, and export.faces
shipping it as the filter's graph."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trainers.faces_critic import Critic, CriticConfig, critic_summary, load_critic, main, roc_area, train


@pytest.fixture(scope="module")
def critic_checkpoint(tmp_path_factory, tiny_faces_model, synthetic_faces_dir):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("critic") / "critic.pt"
    cfg = CriticConfig(model=str(tiny_faces_model), data=str(synthetic_faces_dir), holdout=0, fakes=16, steps=6,
                       batch=4, validation=2, width=4, threads=1)
    lines: list[str] = []
    metrics = train(cfg, out, log=lines.append)
    assert out.is_file() and 0.0 <= metrics["roc_area"] <= 1.0 and lines[-1].startswith("step 6:")
    return out


def test_the_checkpoint_holds_the_critic_and_what_it_judged(critic_checkpoint, tiny_faces_model):
    critic = load_critic(critic_checkpoint)
    assert isinstance(critic, Critic) and not critic.training
    summary = critic_summary(critic_checkpoint)
    manifest = json.loads((tiny_faces_model / "manifest.json").read_text(encoding="utf-8"))
    assert summary["generator"] == {"precision": "fp32",
                                    "steps_completed": manifest["training"]["steps_completed"]}
    assert summary["steps"] == 6 and "model" not in summary and "threads" not in summary


def test_a_faces_logit_does_not_depend_on_the_batch(critic_checkpoint):
    critic = load_critic(critic_checkpoint)
    x = torch.rand(5, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        together = critic(x)
        alone = torch.cat([critic(x[i:i + 1]) for i in range(5)])
    assert together.shape == (5,) and torch.allclose(together, alone, atol=1e-6)


def test_a_faces_brightness_and_contrast_do_not_move_its_logit():
    """Standardize: the critic cannot prefer a colour cast, so filtering keeps the generated set's colours."""
    critic = Critic(width=4).eval()
    x = torch.rand(3, 3, 64, 64) * 1.6 - 0.8
    shifted = x * torch.tensor([0.5, 0.8, 1.1])[:, None, None] + torch.tensor([0.1, -0.2, 0.05])[:, None, None]
    with torch.no_grad():
        assert torch.allclose(critic(x), critic(shifted), atol=1e-4)
        plain = Critic(width=4, standardize=False).eval()
        assert not torch.allclose(plain(x), plain(shifted), atol=1e-4)


def test_roc_area_counts_ties_half():
    assert roc_area(torch.tensor([2.0, 3.0]), torch.tensor([1.0])) == 1.0
    assert roc_area(torch.tensor([1.0]), torch.tensor([1.0])) == 0.5


def test_export_ships_the_critic_as_the_filter(critic_checkpoint, tiny_faces_checkpoint, tmp_path):
    from export.faces import export_faces
    from export.model_dir import ExportError
    from genrt.faces.generator import FaceGenerator
    out = export_faces(tiny_faces_checkpoint, tmp_path / "faces", batch_sizes=(1, 3), threads=1,
                       critic=critic_checkpoint, log=lambda _: None)
    faces = FaceGenerator.load(out, provider="cpu", threads=1)
    assert faces.manifest.discriminator_training["network"].startswith("critic")
    images = faces.generate(6, seed=3)
    want = load_critic(critic_checkpoint)(
        torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)).detach().numpy()
    np.testing.assert_allclose(faces.realness(images), want, rtol=1e-4, atol=1e-4)
    plain = export_faces(tiny_faces_checkpoint, tmp_path / "plain", batch_sizes=(1,), threads=1, log=lambda _: None)
    assert FaceGenerator.load(plain, provider="cpu", threads=1).manifest.discriminator_training == {}
    with pytest.raises(ExportError, match="--no-discriminator"):
        export_faces(tiny_faces_checkpoint, tmp_path / "none", critic=critic_checkpoint, discriminator=False,
                     log=lambda _: None)


def test_the_command_line_names_a_missing_data_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "c.pt"), "--data", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nowhere" in err
