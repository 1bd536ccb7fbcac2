"""`genrt faces`: files written, determinism, and one-line exit-2 errors for bad input."""
from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from genrt.cli import main, user_errors
from genrt.runtime import available_providers


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def faces_args(model, out, *extra: str) -> list[str]:
    return ["faces", "--model", str(model), "-o", str(out), "--threads", "1", *extra]


def assert_user_error(result, *words: str) -> None:
    """Exit code 2, no traceback, exactly one 'Error:' line, and it names the problem."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for word in words:
        assert word in errors[0], errors[0]


def test_writes_n_pngs_and_a_grid(tiny_faces_model, tmp_path):
    out = tmp_path / "out"
    result = run(*faces_args(tiny_faces_model, out, "--n", "5", "--seed", "1", "--batch-size", "2"))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"face_{i:04d}.png" for i in range(5)] + ["grid.png"]
    with Image.open(out / "face_0003.png") as im:
        assert im.size == (64, 64) and im.mode == "RGB"
    with Image.open(out / "grid.png") as im:
        assert im.size == (3 * 64 + 4 * 2, 2 * 64 + 3 * 2)           # 3 x 2 cells, 2-pixel gaps


def test_same_seed_gives_byte_identical_files(tiny_faces_model, tmp_path):
    for name, batch in (("a", "64"), ("b", "3")):
        assert run(*faces_args(tiny_faces_model, tmp_path / name, "--n", "4", "--seed", "7",
                               "--batch-size", batch)).exit_code == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_default_count_and_random_seed_is_printed(tiny_faces_model, tmp_path):
    result = run(*faces_args(tiny_faces_model, tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("face_*.png"))) == 16
    assert "seed: " in result.stderr


def test_interpolate_writes_frames(tiny_faces_model, tmp_path):
    result = run(*faces_args(tiny_faces_model, tmp_path / "out", "--interpolate", "4", "--seed", "2"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"frame_{i:04d}.png" for i in range(4)] + [
        "grid.png"]


def test_auto_provider_falls_back_to_cpu_quietly(tiny_faces_model, tmp_path):
    if "cuda" in available_providers():
        pytest.skip("CUDA is available here")
    result = run(*faces_args(tiny_faces_model, tmp_path / "out", "--n", "1", "--provider", "auto"))
    assert result.exit_code == 0
    assert "CUDA" not in result.stderr        # said only when CUDA was asked for


def test_truncation_changes_faces_and_one_is_the_default(tiny_faces_model, tmp_path):
    for name, extra in (("plain", []), ("one", ["--truncation", "1"]), ("half", ["--truncation", "0.5"])):
        assert run(*faces_args(tiny_faces_model, tmp_path / name, "--n", "2", "--seed", "3", *extra)).exit_code == 0
    face = "face_0001.png"
    assert (tmp_path / "plain" / face).read_bytes() == (tmp_path / "one" / face).read_bytes()
    assert (tmp_path / "plain" / face).read_bytes() != (tmp_path / "half" / face).read_bytes()


def test_filter_writes_the_faces_the_discriminator_keeps(tiny_faces_model, tmp_path):
    from genrt.faces import FaceGenerator
    result = run(*faces_args(tiny_faces_model, tmp_path / "kept", "--n", "3", "--seed", "4", "--filter", "0.5",
                             "--batch-size", "2"))
    assert result.exit_code == 0, result.output
    want = FaceGenerator.load(tiny_faces_model, provider="cpu", threads=1).generate(3, seed=4, keep=0.5)
    for i in range(3):
        with Image.open(tmp_path / "kept" / f"face_{i:04d}.png") as im:
            assert np.array_equal(np.asarray(im), want[i])


@pytest.mark.parametrize("extra, words", [
    (["--filter", "0"], ["--filter"]), (["--filter", "1.5"], ["--filter"]), (["--filter", "nan"], ["--filter"]),
    (["--filter", "0.5", "--seeds", "1-3"], ["--filter", "--seeds"]),
    (["--filter", "0.5", "--interpolate", "4"], ["--filter", "--interpolate"]),
    (["--n", "1000", "--filter", "0.001"], ["1,000,000", "limit"]),
    (["--n", "1", "--filter", "1e-310"], ["too many", "limit"]),
])
def test_bad_filter(tiny_faces_model, tmp_path, extra, words):
    assert_user_error(run(*faces_args(tiny_faces_model, tmp_path / "out", *extra)), *words)
    assert not (tmp_path / "out").exists()


def test_filter_with_a_model_that_has_no_discriminator(model_copy, tmp_path):
    import json
    (model_copy / "discriminator.onnx").unlink()
    data = json.loads((model_copy / "manifest.json").read_text())
    data["discriminator_file"] = ""
    data["graphs"].pop("discriminator")
    (model_copy / "manifest.json").write_text(json.dumps(data))
    assert run(*faces_args(model_copy, tmp_path / "plain", "--n", "2")).exit_code == 0
    assert_user_error(run(*faces_args(model_copy, tmp_path / "out", "--n", "2", "--filter", "0.5")),
                      "--filter", "discriminator", str(model_copy))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("psi", ["0", "1.5", "-1", "nan", "inf"])
def test_bad_truncation(tiny_faces_model, tmp_path, psi):
    assert_user_error(run(*faces_args(tiny_faces_model, tmp_path / "out", "--truncation", psi)), "--truncation")
    assert not (tmp_path / "out").exists()


def test_nrow_and_no_grid(tiny_faces_model, tmp_path):
    assert run(*faces_args(tiny_faces_model, tmp_path / "a", "--n", "6", "--nrow", "3", "--seed", "1")).exit_code == 0
    with Image.open(tmp_path / "a" / "grid.png") as im:
        assert im.size == (3 * 64 + 4 * 2, 2 * 64 + 3 * 2)
    result = run(*faces_args(tiny_faces_model, tmp_path / "b", "--n", "2", "--no-grid"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["face_0000.png", "face_0001.png"]


def test_interpolate_streams_and_grid_shows_evenly_spaced_rows(tiny_faces_model, tmp_path):
    out = tmp_path / "out"
    result = run(*faces_args(tiny_faces_model, out, "--interpolate", "100", "--seed", "2", "--batch-size", "7"))
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("frame_*.png"))) == 100
    with Image.open(out / "grid.png") as im:           # 64 frames shown in 8 rows of 8, not one 100-wide row
        assert im.size == (8 * 64 + 9 * 2, 8 * 64 + 9 * 2)
        grid = np.asarray(im)
    with Image.open(out / "frame_0099.png") as last:   # the last frame is the grid's last cell
        assert np.array_equal(grid[-66:-2, -66:-2], np.asarray(last))


def test_refuses_to_mix_two_runs_and_overwrite_removes_only_its_own_files(tiny_faces_model, tmp_path):
    out = tmp_path / "out"
    assert run(*faces_args(tiny_faces_model, out, "--n", "3", "--seed", "1")).exit_code == 0
    (out / "notes.txt").write_text("mine")
    result = run(*faces_args(tiny_faces_model, out, "--n", "2", "--seed", "2"))
    assert_user_error(result, "earlier run", "--overwrite")
    assert len(list(out.glob("face_*.png"))) == 3
    result = run(*faces_args(tiny_faces_model, out, "--n", "2", "--seed", "2", "--overwrite"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["face_0000.png", "face_0001.png", "grid.png", "notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_a_link_in_the_output_folder_is_replaced_not_followed(tiny_faces_model, tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("keep me")
    (out / "face_0000.png").symlink_to(victim)
    assert run(*faces_args(tiny_faces_model, out, "--n", "1", "--overwrite")).exit_code == 0
    assert victim.read_text() == "keep me"
    assert not (out / "face_0000.png").is_symlink()
    assert not list(out.glob(".genrt-*"))               # no temporary files left behind


@pytest.mark.parametrize("n, words", [("0", ["--n", "0"]), ("-3", ["--n", "-3"]), ("many", ["--n", "many"])])
def test_bad_counts(tiny_faces_model, tmp_path, n, words):
    assert_user_error(run(*faces_args(tiny_faces_model, tmp_path / "out", "--n", n)), *words)


def test_output_path_that_is_a_file(tiny_faces_model, tmp_path):
    target = tmp_path / "taken.txt"
    target.write_text("x")
    assert_user_error(run(*faces_args(tiny_faces_model, target)), "taken.txt", "is a file")


def test_output_path_that_cannot_be_created(tiny_faces_model, tmp_path):
    (tmp_path / "taken.txt").write_text("x")
    out = tmp_path / "taken.txt" / "out"                                  # a directory under a regular file
    assert_user_error(run(*faces_args(tiny_faces_model, out)), "cannot create output directory", str(out))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_output_dir_that_is_not_writable(tiny_faces_model, tmp_path):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert_user_error(run(*faces_args(tiny_faces_model, out)), "locked", "not writable")
    finally:
        out.chmod(0o700)


def test_missing_model_dir(tmp_path):
    result = run("faces", "--model", str(tmp_path / "nowhere"), "-o", str(tmp_path / "out"))
    assert_user_error(result, "nowhere", "no such directory")
    assert not (tmp_path / "out").exists()                                # nothing written for a bad model


def test_invalid_model_dir(model_copy, tmp_path):
    (model_copy / "generator.onnx").write_bytes(b"garbage")
    assert_user_error(run(*faces_args(model_copy, tmp_path / "out")), "cannot load generator.onnx")


def test_cuda_without_cuda(tiny_faces_model, tmp_path):
    if "cuda" in available_providers():
        pytest.skip("CUDA is available here")
    result = run(*faces_args(tiny_faces_model, tmp_path / "out", "--provider", "cuda"))
    assert_user_error(result, "provider 'cuda' is not available")


def test_n_and_interpolate_together(tiny_faces_model, tmp_path):
    result = run(*faces_args(tiny_faces_model, tmp_path / "out", "--n", "3", "--interpolate", "3"))
    assert_user_error(result, "--n", "--interpolate")


def test_user_errors_turns_expected_exceptions_into_exit_2():
    import click

    for error in (ValueError("bad\nvalue"), OSError("disk full")):
        with pytest.raises(click.ClickException) as info, user_errors():
            raise error
        assert info.value.exit_code == 2 and "\n" not in info.value.format_message()
    with pytest.raises(KeyError), user_errors():                          # a bug stays a bug
        raise KeyError("x")


def test_short_n(tiny_faces_model, tmp_path):
    assert run(*faces_args(tiny_faces_model, tmp_path / "out", "-n", "3", "--no-grid")).exit_code == 0
    assert len(list((tmp_path / "out").glob("face_*.png"))) == 3


def test_seeds_write_one_face_per_seed_named_by_seed(tiny_faces_model, tmp_path):
    result = run(*faces_args(tiny_faces_model, tmp_path / "seeds", "--seeds", "0-2,7,1", "--batch-size", "2"))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "seeds").iterdir())
    assert names == ["grid.png", "seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    assert "seed: " not in result.stderr                                  # nothing drawn: every seed was named
    assert run(*faces_args(tiny_faces_model, tmp_path / "one", "--n", "1", "--seed", "7")).exit_code == 0
    assert (tmp_path / "seeds" / "seed0007.png").read_bytes() == (tmp_path / "one" / "face_0000.png").read_bytes()


def test_overwrite_replaces_an_earlier_seeds_run(tiny_faces_model, tmp_path):
    out = tmp_path / "out"
    assert run(*faces_args(tiny_faces_model, out, "--seeds", "3")).exit_code == 0
    assert_user_error(run(*faces_args(tiny_faces_model, out, "--n", "1")), "earlier run", "--overwrite")
    assert run(*faces_args(tiny_faces_model, out, "--n", "1", "--overwrite")).exit_code == 0
    assert not (out / "seed0003.png").exists()


@pytest.mark.parametrize("extra, words", [
    (["--seeds", "3-1"], ["--seeds", "3-1"]),
    (["--seeds", "x"], ["--seeds", "'x'"]),
    (["--seeds", "1,-2"], ["--seeds"]),
    (["--seeds", "1", "--seed", "2"], ["--seeds", "--seed"]),
    (["--seeds", "1", "--n", "2"], ["--n", "--seeds"]),
    (["--seeds", "1", "--interpolate", "3"], ["--seeds", "--interpolate"]),
    (["--gif", "a.gif"], ["--gif", "--interpolate"]),
    (["--interpolate", "2001", "--gif", "a.gif"], ["--gif", "2000"]),
])
def test_bad_seeds_and_gif_options(tiny_faces_model, tmp_path, extra, words):
    assert_user_error(run(*faces_args(tiny_faces_model, tmp_path / "out", *extra)), *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("gif, words", [
    ("nowhere/m.gif", ["--gif", "does not exist"]),
    ("out", ["--gif", "is a folder"]),
    ("out/frame_0000.png", ["--gif", "would replace an image"]),
])
def test_a_gif_that_could_not_be_written_is_refused_before_the_run(tiny_faces_model, tmp_path, gif, words):
    result = run(*faces_args(tiny_faces_model, tmp_path / "out", "--interpolate", "3", "--gif", str(tmp_path / gif)))
    assert_user_error(result, *words)
    assert not (tmp_path / "out").exists()


def test_a_gif_in_a_folder_that_takes_no_file_is_refused_before_the_run(tiny_faces_model, tmp_path, monkeypatch):
    import tempfile

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    result = run(*faces_args(tiny_faces_model, tmp_path / "out", "--interpolate", "3", "--gif",
                             str(tmp_path / "m.gif")))
    assert_user_error(result, "--gif", "cannot write in", "Permission denied")
    assert not (tmp_path / "out").exists()


def test_a_gif_inside_the_output_folder(tiny_faces_model, tmp_path):
    result = run(*faces_args(tiny_faces_model, tmp_path / "out", "--interpolate", "3", "--gif",
                             str(tmp_path / "out" / "morph.gif")))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "frame_0000.png", "frame_0001.png", "frame_0002.png", "grid.png", "morph.gif"]


def test_interpolation_as_a_gif(tiny_faces_model, tmp_path):
    gif = tmp_path / "morph.gif"
    result = run(*faces_args(tiny_faces_model, tmp_path / "out", "--interpolate", "5", "--seed", "2", "--gif", str(gif),
                             "--fps", "10", "--batch-size", "2"))
    assert result.exit_code == 0, result.output
    with Image.open(gif) as im:
        assert im.n_frames == 5 and im.size == (64, 64) and im.info["duration"] == 100
    with Image.open(tmp_path / "out" / "grid.png") as im:               # the grid still shows every frame once
        assert im.size == (3 * 64 + 4 * 2, 2 * 64 + 3 * 2)
    again = run(*faces_args(tiny_faces_model, tmp_path / "other", "--interpolate", "5", "--gif", str(gif)))
    assert_user_error(again, str(gif), "--overwrite")
    assert run(*faces_args(tiny_faces_model, tmp_path / "other", "--interpolate", "5", "--gif", str(gif),
                           "--overwrite")).exit_code == 0


def test_help_examples_run(tiny_faces_model, tmp_path, monkeypatch):
    from tests.cli_examples import example_argvs

    examples = example_argvs("faces")
    assert 2 <= len(examples) <= 5
    monkeypatch.chdir(tmp_path)
    for argv in examples:
        result = run(*argv, "--model", str(tiny_faces_model), "--threads", "1")
        assert result.exit_code == 0, (argv, result.output)
