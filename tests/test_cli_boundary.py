"""genrt.cli_boundary and genrt.faces.output through the real command, in subprocesses: interrupts, closed and
full standard streams, a full disk, two runs into one folder, and nothing written outside what a command names."""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from genrt.cli_boundary import INTERRUPTED_EXIT, TERMINATED_EXIT, one_line
from genrt.runtime import GRAPH_RUN_ERRORS

ROOT = Path(__file__).resolve().parents[1]


def genrt_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORT_", "GENRT_"))}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(home / ".cache"))
    return env


def genrt(args: list[str], home: Path, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "genrt", *args], env=genrt_env(home), cwd=home, timeout=120,
                          text=True, **kwargs)


def one_error_line(stderr: str, word: str = "") -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr and word in lines[0], stderr


def whole_pngs(folder: Path) -> list[str]:
    """Names of the files in folder, each checked to be a complete PNG."""
    for path in folder.iterdir():
        with Image.open(path) as image:
            image.load()
    return sorted(p.name for p in folder.iterdir())


def debris(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.startswith(".genrt")]


@pytest.fixture
def home(tmp_path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


def test_home_is_untouched_by_faces(home, tiny_faces_model):
    """onnxruntime's telemetry database and device id (~/.cache/Microsoft) are never written."""
    faces = genrt(["faces", "--n", "2", "-o", "out", "--model", str(tiny_faces_model), "--seed", "0"], home)
    assert faces.returncode == 0, faces.stderr
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == ["out", "out/face_0000.png",
                                                                        "out/face_0001.png", "out/grid.png"]


def test_home_is_untouched_by_poem_and_score(home, tiny_poems_dir):
    poem = genrt(["poem", "春江", "--model", str(tiny_poems_dir), "--max-new-tokens", "4"], home)
    score = genrt(["score", "春江", "春江花月", "--model", str(tiny_poems_dir)], home)
    assert poem.returncode == 0 and score.returncode == 0, poem.stderr + score.stderr
    assert list(home.iterdir()) == []


def test_home_is_untouched_by_benchmarks_that_import_onnxruntime_first(home):
    """A benchmark module importing onnxruntime before genrt still writes no telemetry (the package switches it
    off first)."""
    done = subprocess.run([sys.executable, "-c", "import benchmarks.engine_load, onnxruntime, benchmarks.versus"],
                          env=genrt_env(home), cwd=home, timeout=120, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert list(home.iterdir()) == []


def test_a_read_only_home_gives_no_warning(home, tiny_faces_model, tmp_path):
    home.chmod(0o555)
    try:
        result = genrt(["faces", "--n", "1", "-o", str(tmp_path / "out"), "--model", str(tiny_faces_model),
                        "--seed", "0"], home)
    finally:
        home.chmod(0o755)
    assert result.returncode == 0 and result.stderr == "" and list(home.iterdir()) == []


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, INTERRUPTED_EXIT), (signal.SIGTERM, TERMINATED_EXIT)])
def test_interrupting_faces_at_random_points_leaves_only_whole_runs(home, tiny_faces_model, sig, code):
    """Interrupted at random moments (start-up, loading, writing, committing): exit 0 or the signal's code, one
    line and no traceback, no temporary file, and the folder holds nothing or exactly one whole run."""
    rng = random.Random(sig)
    out = home / "out"
    for attempt in range(4):
        process = subprocess.Popen([sys.executable, "-m", "genrt", "faces", "--n", "60", "--batch-size", "1",
                                    "-o", str(out), "--overwrite", "--model", str(tiny_faces_model), "--seed", "1",
                                    "--threads", "1"], env=genrt_env(home), cwd=home, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.05, 2.0))
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=60)
        # SIGTERM before the command starts (imports) ends the process the default way, having written nothing
        assert process.returncode in ((0, code, -sig) if sig == signal.SIGTERM else (0, code)), stderr
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) <= 1, stderr
        assert debris(home) == []
        if out.exists():
            names = whole_pngs(out)
            assert names in ([], [f"face_{i:04d}.png" for i in range(60)] + ["grid.png"]), names


@pytest.mark.parametrize("delay", [0.1, 0.3])
def test_ctrl_c_during_start_up_is_one_line(home, delay):
    process = subprocess.Popen([sys.executable, "-m", "genrt", "faces", "-o", "out", "--seed", "0"],
                               env=genrt_env(home), cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    # 0: it finished before the signal; -SIGINT: the signal came while the interpreter itself started, before
    # Python handles signals and before any genrt code ran (nothing written, no traceback)
    assert process.returncode in (INTERRUPTED_EXIT, 0, -signal.SIGINT), stderr
    if process.returncode == INTERRUPTED_EXIT:
        one_error_line(stderr, "genrt: interrupted")
    if process.returncode == -signal.SIGINT:
        assert stderr == ""
    assert debris(home) == []


def test_a_poem_is_never_lost_to_a_closed_stdout(home, tiny_poems_dir):
    result = genrt(["poem", "春江", "--model", str(tiny_poems_dir), "--max-new-tokens", "4"], home,
                   stdout=subprocess.DEVNULL, pass_fds=(), preexec_fn=lambda: os.close(1))
    assert result.returncode == 2
    one_error_line(result.stderr, "standard output is closed")


@pytest.mark.parametrize("command", [["poem", "春江", "--max-new-tokens", "4"], ["score", "春江", "春江花月"]])
def test_a_full_stdout_is_one_line(home, tiny_poems_dir, command):
    with open("/dev/full", "w") as full:
        result = genrt([*command, "--model", str(tiny_poems_dir)], home, stdout=full)
    assert result.returncode == 2
    one_error_line(result.stderr, "cannot write to standard output")


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["faces", "--help"]])
def test_help_and_version_into_a_full_stdout_are_one_line(home, args):
    with open("/dev/full", "w") as full:
        result = genrt(args, home, stdout=full)
    assert result.returncode == 2
    one_error_line(result.stderr, "cannot write to standard output")


@pytest.mark.parametrize("args", [["poem", "春江", "--max-new-tokens", "4"], ["--help"],
                                  ["poem", "春江", "--greedy", "--stream", "--max-new-tokens", "8"]])
def test_a_reader_that_closed_the_pipe_stops_the_command_quietly(home, tiny_poems_dir, args):
    """`genrt poem ... | head -1`: the reader has what it wanted; no line, exit 1 (as click does for --help)."""
    read, write = os.pipe()
    os.close(read)                                    # the reader has gone before the first write
    try:
        result = genrt([*args, "--model", str(tiny_poems_dir)] if args[0] == "poem" else args, home, stdout=write)
    finally:
        os.close(write)
    assert result.returncode == 1 and result.stderr == "", result.stderr


@pytest.mark.parametrize("args", [[], ["models"]])
def test_a_group_without_a_command_shows_its_help(home, args):
    result = genrt(args, home)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("Usage: genrt") and "Commands:" in result.stderr


def test_faces_with_stderr_closed_still_writes_every_image(home, tiny_faces_model):
    result = genrt(["faces", "--n", "5", "--batch-size", "2", "-o", "out", "--model", str(tiny_faces_model)], home,
                   stderr=subprocess.DEVNULL, preexec_fn=lambda: os.close(2))
    assert result.returncode == 0
    assert whole_pngs(home / "out") == [f"face_{i:04d}.png" for i in range(5)] + ["grid.png"]


def test_two_runs_into_one_folder_do_not_both_succeed(home, tiny_faces_model):
    args = [sys.executable, "-m", "genrt", "faces", "--n", "40", "--batch-size", "1", "-o", "out", "--overwrite",
            "--model", str(tiny_faces_model), "--threads", "1"]
    runs = [subprocess.Popen(args + ["--seed", str(s)], env=genrt_env(home), cwd=home, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for s in (1, 2)]
    results = [(r.wait(timeout=120), r.stderr.read()) for r in runs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 2]), results
    if codes == [0, 2]:
        assert any("another genrt run" in err for _, err in results), results
    assert len(whole_pngs(home / "out")) == 41 and debris(home) == []


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    folder = tmp_path / "disk"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("this machine does not allow mounting a tmpfs")
    yield folder
    subprocess.run(["umount", str(folder)], capture_output=True)


def test_a_full_disk_is_one_line_and_keeps_the_earlier_run(home, tiny_faces_model, small_disk):
    first = genrt(["faces", "--n", "2", "-o", str(small_disk), "--model", str(tiny_faces_model), "--seed", "0"], home)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in small_disk.iterdir()}
    second = genrt(["faces", "--n", "2000", "-o", str(small_disk), "--overwrite", "--model", str(tiny_faces_model),
                    "--seed", "1"],
                   home)
    assert second.returncode == 2
    one_error_line(second.stderr, "No space left")
    assert {p.name: p.read_bytes() for p in small_disk.iterdir()} == before


@pytest.mark.parametrize("error, word", [
    (RecursionError(), "nested too deeply"), (MemoryError(), "not enough memory"),
    (GRAPH_RUN_ERRORS[0]("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION\nmore"), "graph failed while running"),
    (ValueError("a\nb"), "a b"), (OSError(13, "Permission denied"), "Permission denied"),
])
def test_expected_errors_become_one_line(error, word):
    message = one_line(error)
    assert word in message and "\n" not in message


def test_a_bug_is_not_disguised():
    assert one_line(AttributeError("x")) is None and one_line(KeyError("x")) is None
