"""genrt.faces.output: a run owns its folder (lock), stages new images, replaces the earlier run only at the end,
and removes only genrt's own names."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from genrt.faces.images import own_files, save_png
from genrt.faces.output import OutputError, RunFolder

PIXELS = np.zeros((2, 2, 3), dtype=np.uint8)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def earlier_run(folder: Path, count: int = 3) -> None:
    folder.mkdir(exist_ok=True)
    for i in range(count):
        save_png(PIXELS, folder / f"face_{i:04d}.png")


@pytest.mark.parametrize("name", [
    "face_٠٠٠١.png",          # Arabic-Indic digits
    "face_０００１.png",        # fullwidth digits
    "face_१२३४.png",          # Devanagari digits
    "frame_߀߀߀߀.png",        # NKo digits
    "face_0001.png\n",       # a trailing newline
    "grid.png\n",
    "face_001.png",          # three digits: never written by genrt
    "Face_0001.png", "face_0001.PNG", "face_0001.png.bak", "seed００００.png",
])
def test_names_that_only_look_like_genrts_are_never_removed(tmp_path, name):
    (tmp_path / name).write_text("mine")
    assert own_files(tmp_path) == []
    with RunFolder(tmp_path, overwrite=True) as run:
        save_png(PIXELS, run.stage / "face_0000.png")
        run.commit()
    assert (tmp_path / name).read_text() == "mine"


def test_a_completed_run_moves_its_files_in_and_leaves_no_staging(tmp_path):
    with RunFolder(tmp_path / "out") as run:
        save_png(PIXELS, run.stage / "face_0000.png")
        run.commit()
    assert names(tmp_path / "out") == ["face_0000.png"]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt(), RuntimeError("x")])
def test_a_failed_run_after_overwrite_keeps_the_earlier_run(tmp_path, failure):
    earlier_run(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(type(failure)):
        with RunFolder(tmp_path, overwrite=True) as run:
            save_png(PIXELS + 1, run.stage / "face_0000.png")
            raise failure
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_overwrite_replaces_the_earlier_run_whole(tmp_path):
    earlier_run(tmp_path, count=5)
    (tmp_path / "notes.txt").write_text("mine")
    with RunFolder(tmp_path, overwrite=True) as run:
        save_png(PIXELS, run.stage / "face_0000.png")
        run.commit()
    assert names(tmp_path) == ["face_0000.png", "notes.txt"]


def test_an_earlier_run_is_refused_without_overwrite(tmp_path):
    earlier_run(tmp_path)
    with pytest.raises(OutputError, match="--overwrite"):
        RunFolder(tmp_path).__enter__()
    assert names(tmp_path) == ["face_0000.png", "face_0001.png", "face_0002.png"]


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    with RunFolder(tmp_path) as first:
        with pytest.raises(OutputError, match="another genrt run"):
            RunFolder(tmp_path, overwrite=True).__enter__()
        save_png(PIXELS, first.stage / "face_0000.png")
        first.commit()
    with RunFolder(tmp_path, overwrite=True) as second:       # free again once the first has finished
        second.commit()


def test_what_a_killed_run_left_is_removed_by_the_next_run(tmp_path):
    (tmp_path / ".genrt-stage-abc123").mkdir()
    (tmp_path / ".genrt-stage-abc123" / "face_0000.png").write_bytes(b"half")
    (tmp_path / ".genrt-x1y2.png.tmp").write_bytes(b"half")
    (tmp_path / ".genrt-notes").write_text("not genrt's temporary name")
    with RunFolder(tmp_path) as run:
        run.commit()
    assert names(tmp_path) == [".genrt-notes"]


def test_a_link_under_a_face_name_is_replaced_not_followed(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(target, out / "face_0000.png")
    with RunFolder(out, overwrite=True) as run:
        save_png(PIXELS, run.stage / "face_0000.png")
        run.commit()
    assert target.read_text() == "keep" and not (out / "face_0000.png").is_symlink()


@pytest.mark.parametrize("out", ["", "   ", None, 123])
def test_an_unnamed_output_folder_is_refused(out):
    with pytest.raises(OutputError, match="must be named"):
        RunFolder(out)


def test_a_file_in_place_of_the_folder_is_refused(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(OutputError, match="not a directory"):
        RunFolder(tmp_path / "out").__enter__()
    assert (tmp_path / "out").read_text() == "a file"


def test_a_folder_under_an_image_name_is_refused_before_anything_moves(tmp_path):
    earlier_run(tmp_path, count=2)
    (tmp_path / "face_0002.png" / "x").mkdir(parents=True)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(OutputError, match="face_0002.png is a folder"):
        with RunFolder(tmp_path, overwrite=True) as run:
            for i in range(3):
                save_png(PIXELS + 1, run.stage / f"face_{i:04d}.png")
            run.commit()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert names(tmp_path) == ["face_0000.png", "face_0001.png", "face_0002.png"]    # no staging left


def test_ctrl_c_during_the_moves_is_held_until_the_run_is_whole(tmp_path, monkeypatch):
    """A Ctrl-C that arrives while the images move in is delivered after the last one: one run or the other."""
    import signal
    import genrt.faces.output as output
    earlier_run(tmp_path, count=4)
    moves, real_replace = [], os.replace

    def replace(src, dst):
        if Path(dst).parent != tmp_path:                   # a PNG written into the staging folder
            return real_replace(src, dst)
        moves.append(dst)
        if len(moves) == 2:
            signal.raise_signal(signal.SIGINT)             # held: no KeyboardInterrupt between two moves
        real_replace(src, dst)
    monkeypatch.setattr(output.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        with RunFolder(tmp_path, overwrite=True) as run:
            for i in range(3):
                save_png(PIXELS + 1, run.stage / f"face_{i:04d}.png")
            run.commit()
    assert len(moves) == 3 and names(tmp_path) == ["face_0000.png", "face_0001.png", "face_0002.png"]


def test_a_run_that_fails_before_it_commits_leaves_no_folder_it_made(tmp_path):
    for out in (tmp_path / "new", tmp_path / "deeper" / "new"):
        with pytest.raises(KeyboardInterrupt):
            with RunFolder(out) as run:
                (run.stage / "face_0000.png").write_bytes(b"x")
                raise KeyboardInterrupt
        assert not out.exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError):
        with RunFolder(tmp_path / "kept"):
            raise RuntimeError("failed")
    assert (tmp_path / "kept").is_dir()                       # a folder the user had stays, even empty
    with RunFolder(tmp_path / "done") as run:
        (run.stage / "face_0000.png").write_bytes(b"x")
        run.commit()
    assert (tmp_path / "done" / "face_0000.png").is_file()


def test_a_run_that_loses_the_race_for_a_new_folder_leaves_it_to_the_winner(tmp_path):
    """Two runs into one new folder: both see it missing and make it; the one that does not get the lock must not
    remove it (the winner may not have staged anything in it yet)."""
    import fcntl  # noqa: F401  (the lock this needs)

    class SeenMissing(type(tmp_path)):
        def exists(self, **kwargs):                        # as the loser saw it, before the winner's mkdir
            return False
    with RunFolder(tmp_path / "out") as winner:
        loser = RunFolder(tmp_path / "out")
        loser.out = SeenMissing(tmp_path / "out")
        with pytest.raises(OutputError, match="another genrt run"):
            loser.__enter__()
        assert (tmp_path / "out").is_dir() and winner.stage.is_dir()
        (winner.stage / "face_0000.png").write_bytes(b"x")
        winner.commit()
    assert names(tmp_path / "out") == ["face_0000.png"]
