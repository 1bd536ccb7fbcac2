"""Both trainers run unchanged under torchrun with two gloo ranks (CPU)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def torchrun(module: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", module, "--dry-run", "--threads", "1", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


def test_faces_trainer_under_torchrun(tmp_path):
    data = tmp_path / "faces"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (109, 89, 3), dtype=np.uint8)).save(data / f"{i:06d}.jpg")
    done = torchrun("trainers.faces", "--data", str(data), "--out", str(tmp_path / "run"), "--ngf", "8", "--ndf", "8")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert list((tmp_path / "run" / "samples").glob("*.png"))


def test_poems_trainer_under_torchrun(tmp_path):
    done = torchrun("trainers.poems", "--out", str(tmp_path / "run"), "--d-model", "16", "--num-heads", "2",
                    "--dim-feedforward", "32")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
