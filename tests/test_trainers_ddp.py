"""Both trainers run unchanged under torchrun with two gloo ranks (CPU)."""
import os
import socket
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


PROBE = """
import torch, torch.distributed as dist
from trainers.common import setup_distributed, teardown_distributed
info = setup_distributed()
x = torch.ones(1) * (info.rank + 1)
dist.all_reduce(x)
assert x.item() == 3, x
teardown_distributed()
"""


@pytest.fixture(scope="module")
def gloo_works(tmp_path_factory):
    """Two local gloo ranks through our own setup_distributed: if even this cannot connect (a sandbox without
    loopback networking), the trainer tests below cannot say anything about the trainers, so they skip."""
    script = tmp_path_factory.mktemp("probe") / "probe.py"
    script.write_text(PROBE)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.skip("two gloo ranks cannot talk on this machine:\n" + failure_report(done))


def failure_report(done: subprocess.CompletedProcess) -> str:
    """What the ranks said (not just torchrun's summary), plus how this host's name resolves."""
    keys = ("error", "exception", "terminate", "what()", "gloo", "warning", "refused", "timed out")
    said = [line for line in done.stderr.splitlines() if any(k in line.lower() for k in keys)]
    try:
        addresses = sorted({a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None)})
    except OSError as e:
        addresses = [f"unresolvable: {e}"]
    return (f"hostname {socket.gethostname()!r} -> {addresses}\n" + "\n".join(said[:40])
            + "\n--- stdout tail ---\n" + done.stdout[-1500:] + "\n--- stderr tail ---\n" + done.stderr[-1500:])


def test_faces_trainer_under_torchrun(gloo_works, tmp_path):
    data = tmp_path / "faces"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(rng.integers(0, 255, (109, 89, 3), dtype=np.uint8)).save(data / f"{i:06d}.jpg")
    done = torchrun("trainers.faces", "--data", str(data), "--out", str(tmp_path / "run"), "--ngf", "8", "--ndf", "8")
    assert done.returncode == 0, failure_report(done)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert list((tmp_path / "run" / "samples").glob("*.png"))


def test_poems_trainer_under_torchrun(gloo_works, tmp_path):
    done = torchrun("trainers.poems", "--out", str(tmp_path / "run"), "--d-model", "16", "--num-heads", "2",
                    "--dim-feedforward", "32")
    assert done.returncode == 0, failure_report(done)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
