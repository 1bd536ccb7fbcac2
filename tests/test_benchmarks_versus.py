"""benchmarks.versus: the conversion command, the worker protocol and the head-to-head report."""
import subprocess
from multiprocessing import Pipe
from pathlib import Path

import pytest

from benchmarks import versus


def test_markdown_gives_each_engine_and_genrts_speed_ratio():
    report = {"cpu": {"model": "Test CPU", "flags": ["avx2", "fma"]}, "rounds": 8, "block": 5,
              "onnxruntime": "1.22.0", "ctranslate2": "4.5.0",
              "rows": [{"precision": "fp32", "threads": 1, "genrt_ms": 0.5, "ct2_ms": 0.75},
                       {"precision": "int8", "threads": 2, "genrt_ms": 0.4, "ct2_ms": 0.2}]}
    lines = versus.markdown(report).splitlines()
    assert lines[0].startswith("Test CPU (avx2, fma), 8 rounds of 5 runs per engine")
    assert f"{versus.NEW_TOKENS} new characters per prompt (batch 1: {versus.PROMPT}" in lines[0]
    assert "onnxruntime 1.22.0, CTranslate2 4.5.0" in lines[0]
    assert lines[-2:] == ["| fp32 | 1 | 1 | greedy | lanes | 0.500 | 2,000 | one batch | 0.750 | 1,333 | 1.50x | 1.50x |",
                          "| int8 | 2 | 1 | greedy | lanes | 0.400 | 2,500 | one batch | 0.200 | 5,000 | 0.50x | 0.50x |"]


def test_markdown_gives_each_engines_batch_gain_over_its_single_prompt():
    report = {"cpu": {"model": "Test CPU", "flags": []}, "rounds": 2, "block": 3, "onnxruntime": "1.22.0",
              "ctranslate2": "4.5.0",
              "rows": [{"precision": "int8", "threads": 2, "beams": 1, "batch": 1, "genrt_ms": 0.3, "ct2_ms": 0.3},
                       {"precision": "int8", "threads": 2, "beams": 1, "batch": 16, "genrt_ms": 0.1,
                        "ct2_ms": 0.12},
                       {"precision": "int8", "threads": 2, "beams": 1, "batch": 16, "genrt_ms": 0.1,
                        "ct2_ms": 0.075, "ct2_parallel": "inter"},
                       {"precision": "int8", "threads": 2, "beams": 1, "batch": 16, "genrt_ms": 0.075,
                        "ct2_ms": 0.12, "genrt_mode": "processes"}]}
    lines = versus.markdown(report).splitlines()
    assert "| int8 | 2 | 16 | greedy | lanes | 0.100 | 10,000 | one batch | 0.120 | 8,333 | 1.20x | 0.75x |" in lines
    assert "| int8 | 2 | 16 | greedy | lanes | 0.100 | 10,000 | split | 0.075 | 13,333 | 0.75x | 0.75x |" in lines
    assert "| int8 | 2 | 16 | greedy | processes | 0.075 | 13,333 | one batch | 0.120 | 8,333 | 1.60x | 1.00x |" in lines
    assert lines[-1] == ("Batch tokens/s against the same engine's single prompt (same rounds): int8 2 threads: "
                         "genrt 3.00x, CTranslate2 2.50x; int8 2 threads: genrt processes 4.00x, CTranslate2 2.50x.")
    assert versus.ct2_modes(2, 16) == ("intra", "inter") and versus.ct2_modes(2, 1) == versus.ct2_modes(1, 16)
    assert versus.genrt_modes(2, 16) == ("lanes", "processes") and versus.genrt_modes(1, 16) == ("lanes",)
    assert versus.batch_prompts(3) == list(versus.PROMPTS[:3]) and len(set(versus.batch_prompts(16))) == 16


def test_markdown_gives_each_engines_beam_cost_against_its_own_greedy():
    report = {"cpu": {"model": "Test CPU", "flags": []}, "rounds": 2, "block": 3, "onnxruntime": "1.22.0",
              "ctranslate2": "4.5.0",
              "rows": [{"precision": "int8", "threads": 1, "beams": 1, "genrt_ms": 0.3, "ct2_ms": 0.4},
                       {"precision": "int8", "threads": 1, "beams": 4, "genrt_ms": 0.75, "ct2_ms": 0.6}]}
    lines = versus.markdown(report).splitlines()
    assert "| int8 | 1 | 1 | beam 4 | lanes | 0.750 | 1,333 | one batch | 0.600 | 1,667 | 0.80x | 0.80x |" in lines
    assert lines[-1] == ("Beam 4 per token against the same engine's greedy (same rounds): int8 1 thread batch 1: "
                         "genrt 2.50x, CTranslate2 1.50x.")


def test_convert_runs_the_exporter_and_names_its_failure(monkeypatch):
    seen = []

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1 if "int8" in cmd else 0, "", "Traceback ...\nValueError: boom")
    monkeypatch.setattr(versus.subprocess, "run", fake_run)
    versus.convert(Path("w.pt"), Path("out"), "float32")
    assert seen[0][1:] == ["-m", "export.ctranslate2", "--checkpoint", "w.pt", "--out", "out", "--quantization",
                           "float32", "--check-prompts", "4", "--no-beam-check"]
    with pytest.raises(RuntimeError, match="(?s)CTranslate2 conversion failed: .*ValueError: boom"):
        versus.convert(Path("w.pt"), Path("out"), "int8")


def test_worker_answers_each_run_until_told_to_stop(monkeypatch):
    runs = []
    monkeypatch.setattr(versus, "genrt_runner", lambda *args: lambda: runs.append(args) or versus.NEW_TOKENS)
    parent, child = Pipe()
    for message in ("run", "run", "stop"):
        parent.send(message)
    versus._worker(child, "genrt", ("model", 1, 1, 1), {})
    answers = [parent.recv(), parent.recv()]
    assert not parent.poll()
    assert len(runs) == 3                                               # the warm-up, then one per "run"
    assert all(n == versus.NEW_TOKENS and ms >= 0 for ms, n in answers)



def test_the_engine_pool_runner_decodes_the_batch_in_processes(tiny_int8_dir, monkeypatch):
    monkeypatch.setattr(versus, "NEW_TOKENS", 8)
    run = versus.genrt_runner(tiny_int8_dir, 2, 1, 3, processes=True)
    try:
        assert run() == 3 * 8                                 # every prompt exactly NEW_TOKENS characters
    finally:
        run.close()
