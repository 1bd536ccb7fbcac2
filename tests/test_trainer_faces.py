"""trainers.faces: dry run on synthetic images, unreadable files skipped, exact resume."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from trainers.common import load_checkpoint
from trainers import faces
from trainers.faces import FacesConfig, load_faces, load_generator, lr_at, main, train

torch.set_num_threads(1)
TINY = dict(nz=16, ngf=8, ndf=8, threads=1, device="cpu", seed=3, holdout=0, snapshot_every=0)


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
    assert "faces: 8 training images" in printed and "(1 unreadable, skipped)" in printed
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["kind"] == "faces-dcgan" and state["step"] == 3
    assert state["config"]["ngf"] == 8 and state["config"]["dry_run"] is True
    generator, cfg, _ = load_generator(out / "checkpoint.pt")
    assert (cfg.nz, cfg.ngf) == (16, 8) and not generator.training
    assert list((out / "samples").glob("step_*.png"))


def weights(path: Path, key: str = "generator") -> dict[str, torch.Tensor]:
    return load_checkpoint(path)[key]


def test_resume_reproduces_an_uninterrupted_run(synthetic_faces_dir, tmp_path):
    common = dict(data=str(synthetic_faces_dir), batch_size=4, checkpoint_every=2, sample_every=1000, **TINY)
    straight = train(FacesConfig(out=str(tmp_path / "straight"), steps=4, **common))
    halfway = weights(train(FacesConfig(out=str(tmp_path / "resumed"), steps=2, **common)))
    resumed = train(FacesConfig(out=str(tmp_path / "resumed"), steps=4, resume=True, **common))
    assert load_checkpoint(resumed)["step"] == 4
    for key in ("generator", "generator_ema", "discriminator"):
        a, b = weights(straight, key), weights(resumed, key)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), (key, [k for k in a if not torch.equal(a[k], b[k])])
    assert not torch.equal(weights(straight)["net.0.weight"], halfway["net.0.weight"])  # steps 3-4 really trained


def test_holdout_split_is_disjoint_and_by_name(tmp_path):
    from trainers.faces import face_paths
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(10):
        (folder / f"{i:06d}.jpg").write_bytes(b"")
    train_paths, held = face_paths(folder, "train", holdout=3), face_paths(folder, "holdout", holdout=3)
    assert [p.name for p in held] == ["000007.jpg", "000008.jpg", "000009.jpg"]
    assert len(train_paths) == 7 and not set(train_paths) & set(held)
    with pytest.raises(SystemExit, match="too few"):
        face_paths(folder, "train", holdout=10)


def test_ema_generator_lags_the_raw_one_and_decay_zero_copies_it(synthetic_faces_dir, tmp_path):
    common = dict(data=str(synthetic_faces_dir), batch_size=4, checkpoint_every=3, sample_every=1000, steps=3, **TINY)
    ema = load_checkpoint(train(FacesConfig(out=str(tmp_path / "ema"), ema_decay=0.9, **common)))
    raw, avg = ema["generator"]["net.0.weight"], ema["generator_ema"]["net.0.weight"]
    assert not torch.equal(raw, avg)
    off = load_checkpoint(train(FacesConfig(out=str(tmp_path / "off"), ema_decay=0.0, **common)))
    assert torch.equal(off["generator"]["net.0.weight"], off["generator_ema"]["net.0.weight"])


def test_snapshots_hold_the_ema_generator_with_its_own_batchnorm_stats(synthetic_faces_dir, tmp_path):
    cfg = dict(TINY, snapshot_every=2)
    train(FacesConfig(data=str(synthetic_faces_dir), out=str(tmp_path / "run"), batch_size=4, steps=4,
                      checkpoint_every=4, sample_every=1000, **cfg))
    snaps = sorted((tmp_path / "run" / "snapshots").glob("step_*.pt"))
    assert [p.name for p in snaps] == ["step_000002.pt", "step_000004.pt"]
    snap, state = load_checkpoint(snaps[-1]), load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert snap["step"] == 4 and "discriminator" not in snap
    assert torch.equal(snap["generator"]["net.0.weight"], state["generator_ema"]["net.0.weight"])
    assert not torch.equal(snap["generator"]["net.1.running_mean"], state["generator_ema"]["net.1.running_mean"])


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--checkpoint-every", "0"), ("--steps", "0"),
                                         ("--ema-decay", "1.0"), ("--augment", "rotate"),
                                         ("--d-batch", "mixed"), ("--moment-match", "-1"),
                                         ("--r1", "-1"), ("--r1-every", "0")])
def test_bad_settings_stop_with_one_line(synthetic_faces_dir, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as stop:
        main(["--data", str(synthetic_faces_dir), "--out", str(tmp_path / "run"), "--holdout", "0", flag, value])
    said = str(stop.value.code) if stop.value.code != 2 else capsys.readouterr().err
    assert (flag.lstrip("-").split("-")[0] if flag != "--augment" else "rotate") in said
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("args, words", [(["--device", "bogus"], "--device 'bogus'"),
                                         (["--data", "/nonexistent/faces"], "/nonexistent/faces")])
def test_a_bad_device_or_a_missing_data_folder_is_one_line(tmp_path, capsys, args, words):
    with pytest.raises(SystemExit) as stop:
        main(["--out", str(tmp_path / "run"), "--holdout", "0", "--data", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error:") and words in err and len(err.splitlines()) == 1


def test_joint_d_batch_lets_the_fake_batch_statistics_reach_the_real_logits():
    from trainers.faces import discriminate
    from trainers.faces_model import Discriminator
    torch.manual_seed(0)
    D = Discriminator(8).train()
    real = torch.rand(6, 3, 64, 64) * 2 - 1
    fake = torch.rand(6, 3, 64, 64) * 2 - 1
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    with torch.no_grad():
        sep = discriminate(D, real, fake, (), gen(), joint=False)
        sep_washed = discriminate(D, real, fake * 0.3, (), gen(), joint=False)
        joint = discriminate(D, real, fake, (), gen(), joint=True)
        joint_washed = discriminate(D, real, fake * 0.3, (), gen(), joint=True)
    assert sep[0].shape == joint[0].shape == (6,) and joint[1].shape == (6,)
    assert torch.equal(sep[0], sep_washed[0])            # separate batches: real logits blind to the fakes
    assert not torch.allclose(joint[0], joint_washed[0])  # joint: a washed-out fake batch moves them


def test_joint_d_batch_trains_and_resumes_exactly(synthetic_faces_dir, tmp_path):
    common = dict(data=str(synthetic_faces_dir), batch_size=4, checkpoint_every=2, sample_every=1000, d_batch="joint",
                  augment="translation", **TINY)
    straight = train(FacesConfig(out=str(tmp_path / "straight"), steps=4, **common))
    train(FacesConfig(out=str(tmp_path / "resumed"), steps=2, **common))
    resumed = train(FacesConfig(out=str(tmp_path / "resumed"), steps=4, resume=True, **common))
    assert load_checkpoint(straight)["config"]["d_batch"] == "joint"
    for key in ("generator", "discriminator"):
        a, b = weights(straight, key), weights(resumed, key)
        assert all(torch.equal(a[k], b[k]) for k in a), key


def test_dataset_moments_match_the_whole_set_at_once():
    from trainers.faces import channel_moments, dataset_moments, to_unit_range
    data = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data[:, 2] //= 4                                             # a dark blue channel: moments differ per channel
    expected = channel_moments(to_unit_range(data))              # (2, 3)
    assert torch.allclose(dataset_moments(data, chunk=3), expected, atol=1e-5)
    assert expected[1, 2] < expected[1, 0] and expected[0, 2] < expected[0, 0]


def tiny_training(**settings):
    """A tiny DCGAN's fresh TrainState and one fixed batch: (cfg, state, real (8, 3, 64, 64), noise (8, nz, 1, 1),
    autocast off), for loss terms trained on the same batch with and without them."""
    from trainers.common import DistInfo
    from trainers.faces import build_state
    cfg = FacesConfig(batch_size=8, augment="", lr=1e-3, **settings, **TINY)
    torch.manual_seed(0)
    state = build_state(cfg, torch.device("cpu"), DistInfo(), Path("/nonexistent/checkpoint.pt"))
    gen = torch.Generator().manual_seed(1)
    real = torch.rand(8, 3, 64, 64, generator=gen) * 2 - 1
    noise = torch.randn(8, cfg.nz, 1, 1, generator=gen)
    return cfg, state, real, noise, torch.autocast("cpu", enabled=False)


def moment_gap_after_training(weight: float, target: torch.Tensor, steps: int = 20) -> float:
    from trainers.faces import channel_moments, train_step
    cfg, state, real, noise, autocast = tiny_training(moment_match=weight)
    for step in range(steps):
        stats = train_step(state, cfg, real, noise, [], torch.Generator().manual_seed(step), autocast, target)
        assert ("std_gap" in stats) == (weight > 0)
    with torch.no_grad():
        return float((channel_moments(state.G(noise)) - target).abs().sum())


def test_moment_match_pulls_the_fake_batch_toward_the_target_moments():
    target = torch.tensor([[0.2, -0.1, -0.3], [0.6, 0.55, 0.55]])  # (2, 3) far from a fresh G's ~0 mean, small std
    assert moment_gap_after_training(50.0, target) < 0.7 * moment_gap_after_training(0.0, target)


def test_r1_penalty_is_the_squared_input_gradient_of_a_linear_critic():
    from trainers.faces import r1_penalty
    D = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 1), torch.nn.Flatten(0))
    real = torch.rand(5, 3, 8, 8)
    expected = D[1].weight.square().sum()                  # D(x) = w.x + b: the input gradient is w for every face
    penalty = r1_penalty(D, real, [], torch.Generator().manual_seed(0))
    assert torch.allclose(penalty, expected, rtol=1e-5)
    penalty.backward()                                     # differentiable in D's weights: d|w|^2/dw = 2w
    assert torch.allclose(D[1].weight.grad, 2 * D[1].weight, rtol=1e-5)


def r1_after_training(gamma: float, steps: int = 12) -> tuple[float, int]:
    from trainers.faces import r1_penalty, train_step
    cfg, state, real, noise, autocast = tiny_training(r1=gamma, r1_every=2)
    penalised = sum("r1" in train_step(state, cfg, real, noise, [], torch.Generator().manual_seed(step), autocast)
                    for step in range(steps))
    return r1_penalty(state.D, real, [], torch.Generator()).item(), penalised


def test_r1_keeps_the_discriminator_smooth_at_the_real_faces_every_nth_step():
    smooth, penalised = r1_after_training(10.0)
    rough, none = r1_after_training(0.0)
    assert (penalised, none) == (6, 0)                     # lazy: steps 0, 2, 4, ... of 12
    assert smooth < 0.5 * rough


def test_resume_with_nothing_to_resume_says_so(synthetic_faces_dir, tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint"):
        train(FacesConfig(data=str(synthetic_faces_dir), out=str(tmp_path / "none"), resume=True, **TINY))


def test_weights_only_copy_warm_starts_training(synthetic_faces_dir, tmp_path):
    from trainers.faces import save_weights
    common = dict(data=str(synthetic_faces_dir), batch_size=4, checkpoint_every=2, sample_every=1000, **TINY)
    first = train(FacesConfig(out=str(tmp_path / "a"), steps=2, **common))
    compact = save_weights(first, tmp_path / "w.pt")
    weights_state = load_checkpoint(compact, expected_kind="faces-dcgan-weights")
    assert "opt_g" not in weights_state and weights_state["generator"]["net.0.weight"].dtype == torch.float16
    assert not weights_state["config"]["out"].startswith("/")           # a committed file names no machine path
    second = load_checkpoint(train(FacesConfig(out=str(tmp_path / "b"), steps=4, init_from=str(compact), **common)))
    assert second["step"] == 4


def test_lr_decay_is_constant_then_linear_to_zero():
    cfg = FacesConfig(lr=2e-4, steps=10, lr_decay_start=6)
    assert [lr_at(cfg, s) for s in (0, 5, 6)] == [2e-4, 2e-4, 2e-4]
    assert lr_at(cfg, 8) == pytest.approx(1e-4) and lr_at(cfg, 9) == pytest.approx(0.5e-4)
    assert lr_at(FacesConfig(lr=2e-4, steps=10), 9) == 2e-4          # 0 = off


def test_resume_inside_the_lr_decay_reproduces_an_uninterrupted_run(synthetic_faces_dir, tmp_path, monkeypatch):
    common = dict(data=str(synthetic_faces_dir), batch_size=4, checkpoint_every=2, sample_every=1000, steps=5,
                  lr_decay_start=1, **TINY)
    straight = train(FacesConfig(out=str(tmp_path / "straight"), **common))
    real_step = faces.train_step

    def interrupted(state, *args):
        if state.step == 3:
            raise KeyboardInterrupt   # killed during step 4; the checkpoint of step 2 survives
        return real_step(state, *args)

    monkeypatch.setattr(faces, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(FacesConfig(out=str(tmp_path / "resumed"), **common))
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["step"] == 2
    monkeypatch.setattr(faces, "train_step", real_step)
    resumed = train(FacesConfig(out=str(tmp_path / "resumed"), resume=True, **common))
    for key in ("generator", "generator_ema", "discriminator"):
        a, b = weights(straight, key), weights(resumed, key)
        assert all(torch.equal(a[k], b[k]) for k in a), key
    assert load_checkpoint(resumed)["opt_g"]["param_groups"][0]["lr"] == pytest.approx(lr_at(FacesConfig(**common), 4))
    constant = train(FacesConfig(out=str(tmp_path / "constant"), **common | {"lr_decay_start": 0}))
    assert not torch.equal(weights(straight)["net.0.weight"], weights(constant)["net.0.weight"])


def test_lr_decay_start_beyond_the_run_is_refused(synthetic_faces_dir, tmp_path):
    with pytest.raises(SystemExit, match="lr-decay-start"):
        main(["--data", str(synthetic_faces_dir), "--out", str(tmp_path / "run"), "--holdout", "0",
              "--steps", "5", "--lr-decay-start", "5"])
