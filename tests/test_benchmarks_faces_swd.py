"""benchmarks.faces_swd: the calibration sets, the --run cache, snapshot generation and the command line."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from benchmarks import faces_swd as fs
from benchmarks.swd import mean_pairwise_distance

from .test_benchmarks_swd import SMALL, blob_images


@pytest.fixture(scope="module")
def faces():
    return blob_images(64, seed=0)


def test_calibration_sets(faces):
    sets = fs.calibration_sets(faces, faces[::-1].copy(), seed=0)
    assert all(s.shape == faces.shape and s.dtype == np.uint8 for s in sets.values())
    assert mean_pairwise_distance(sets[f"one face x{len(faces)}"]) == 0.0


def test_run_cache(tmp_path, faces):
    torch = pytest.importorskip("torch")
    from trainers.common import config_dict
    from trainers.faces import FacesConfig, Generator

    cfg = FacesConfig(nz=8, ngf=8)
    snaps = tmp_path / "run" / "snapshots"
    snaps.mkdir(parents=True)

    def write_snapshot(step: int) -> None:
        torch.manual_seed(step)
        G = Generator(nz=8, ngf=8).eval()
        torch.save({"config": config_dict(cfg), "step": step, "kind": "faces-dcgan", "generator": G.state_dict()},
                   snaps / f"step_{step:06d}.pt")

    write_snapshot(100)
    write_snapshot(200)
    calls = []

    def counting(path, n, seed):
        calls.append(path.name)
        return fs.generate_snapshot(path, n, seed, batch_size=16)

    run = tmp_path / "run"
    rows = fs.score_run(run, faces, n=24, seed=0, generate=counting, log=lambda s: None, **SMALL)
    assert calls == ["step_000100.pt", "step_000200.pt"]
    assert [r["step"] for r in rows] == [100, 200]
    assert all(r["images"] == 24 and r["avg"] > 0 for r in rows)
    cached = json.loads((run / "swd.json").read_text())
    assert sorted(cached["scores"]) == ["step_000100.pt", "step_000200.pt"]
    assert (run / "swd.md").read_text().count("| step ") == 2

    # re-run: nothing new to score; a new snapshot: only it is scored
    calls.clear()
    again = fs.score_run(run, faces, n=24, seed=0, generate=counting, log=lambda s: None, **SMALL)
    assert calls == [] and again == rows
    write_snapshot(300)
    rows3 = fs.score_run(run, faces, n=24, seed=0, generate=counting, log=lambda s: None, **SMALL)
    assert calls == ["step_000300.pt"] and [r["step"] for r in rows3] == [100, 200, 300]
    assert rows3[:2] == rows

    # different settings: the cache no longer applies
    calls.clear()
    fs.score_run(run, faces, n=16, seed=0, generate=counting, log=lambda s: None, **SMALL)
    assert len(calls) == 3


def test_snapshot_matches_generator_latents(tmp_path):
    torch = pytest.importorskip("torch")
    from trainers.common import config_dict
    from trainers.faces import FacesConfig, Generator

    G = Generator(nz=8, ngf=8).eval()
    path = tmp_path / "step_000001.pt"
    torch.save({"config": config_dict(FacesConfig(nz=8, ngf=8)), "step": 1, "kind": "faces-dcgan",
                "generator": G.state_dict()}, path)
    images, info = fs.generate_snapshot(path, 5, seed=3, batch_size=2)
    assert images.shape == (5, 64, 64, 3) and images.dtype == np.uint8 and info["step"] == 1
    with torch.no_grad():
        x = G(torch.from_numpy(fs.latents(5, 8, 3)).view(5, 8, 1, 1))
    expected = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(images, expected)


def test_main_calibrate_models_and_report(tmp_path, faces, monkeypatch, capsys):
    monkeypatch.setattr(fs, "load_real", lambda data, split, holdout, count=0: faces if split == "holdout"
                        else faces[::-1][:count])
    asked = []

    def generate_model(model, n, seed, truncation=1.0, keep=1.0):
        asked.append((truncation, keep))
        return blob_images(n, seed=7)
    monkeypatch.setattr(fs, "generate_model", generate_model)
    out = tmp_path / "res" / "r.json"
    fs.main(["--calibrate", "--model", "m1", "--truncation", "1.0", "0.7", "--filter", "1.0", "0.5", "--n", "24",
             "--patches", "32", "--dirs", "64", "--repeats", "2", "--data", str(tmp_path), "--out", str(out)])
    printed = capsys.readouterr().out
    assert asked == [(1.0, 1.0), (1.0, 0.5), (0.7, 1.0), (0.7, 0.5)]
    names = ["real (train split) vs held-out", "real held-out, blurred", "uniform noise", f"one face x{len(faces)}",
             "m1", "m1 --filter 0.5", "m1 truncation 0.7", "m1 truncation 0.7 --filter 0.5"]
    assert printed.startswith(f"real held-out: {len(faces)} images from {tmp_path} (")
    assert all(f"  {name}: swd avg " in printed for name in names)
    assert printed.endswith(f"wrote {out} and {out.with_suffix('.md')}\n")
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["rows"]] == names
    assert report["rows"][-1]["model"] == "m1" and report["rows"][-1]["truncation"] == 0.7
    assert report["rows"][-1]["keep"] == 0.5
    assert report["settings"]["levels"] == [64, 32, 16] and report["settings"]["patches_per_image"] == 32
    assert report["settings"]["data"] == os.path.relpath(tmp_path, fs.ROOT)     # no machine path in results
    assert report["reference"]["name"] == f"real held-out ({len(faces)})"
    md = out.with_suffix(".md").read_text()
    assert md.startswith("SWD x10^3 (ProGAN") and md.count("\n| ") == len(names) + 2   # header, reference, rows
    with pytest.raises(SystemExit):
        fs.main(["--n", "24"])                    # nothing to score
    with pytest.raises(SystemExit):
        fs.main(["--calibrate", "--n", "1"])
