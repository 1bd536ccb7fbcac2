"""benchmarks.gpu_check without a GPU: one line saying so, exit status 1, nothing run."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(gpu_check.gpu_name() is not None, reason="this machine has an NVIDIA GPU")
def test_without_a_gpu_it_says_so_in_one_line_and_fails(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no NVIDIA GPU here" in done.stderr and "nothing was run" in done.stderr
    assert not any(tmp_path.iterdir())


def test_a_gpu_without_the_cuda_provider_names_the_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(gpu_check, "gpu_name", lambda: "NVIDIA H100, driver 550, 81559 MiB")
    monkeypatch.setattr("genrt.providers.available_providers", lambda: ["cpu"])
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NVIDIA H100" in err and "onnxruntime-gpu" in err and ".[gpu]" in err


def test_gpu_name_is_none_without_nvidia_smi(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("PATH", "")
    assert gpu_check.gpu_name() is None
