"""trainers.gpu_run: a time-boxed run of a trainer, its weights split into small parts and joined back."""
import pytest

torch = pytest.importorskip("torch")

from trainers.common import load_checkpoint  # noqa: E402
from trainers.gpu_run import join, main, split  # noqa: E402


def test_split_and_join_round_trip_and_checks(tmp_path):
    data = bytes(range(256)) * 1000
    (tmp_path / "w.pt").write_bytes(data)
    parts = split(tmp_path / "w.pt", part_mb=0.1)
    assert len(parts) == 3 and all(p.stat().st_size <= 100_000 for p in parts)
    assert join(parts[::-1], tmp_path / "back.pt").read_bytes() == data
    with pytest.raises(SystemExit, match="2 parts of w.pt, expected 3"):
        join(parts[:2], tmp_path / "x.pt")
    parts[1].write_bytes(b"changed")
    with pytest.raises(SystemExit, match="sha256 differs"):
        join(parts, tmp_path / "x.pt")


def test_a_time_boxed_faces_run_brings_back_loadable_weights(synthetic_faces_dir, tmp_path):
    main(["train", "--what", "faces", "--data", str(synthetic_faces_dir), "--out", str(tmp_path / "out"),
          "--minutes", "0.001", "--device", "cpu", "--no-amp", "--part-mb", "0.5", "--steps", "50",
          "--batch-size", "4", "--holdout", "0", "--ngf", "8", "--ndf", "8", "--snapshot-every", "0", "--threads", "1"])
    parts = sorted((tmp_path / "out").glob("faces_weights.pt.part*"))
    assert parts and all(p.stat().st_size <= 500_000 for p in parts)
    main(["join", *map(str, parts), "--out", str(tmp_path / "faces_weights.pt")])
    weights = load_checkpoint(tmp_path / "faces_weights.pt", expected_kind="faces-dcgan-weights")
    assert 1 <= weights["step"] < 50                     # the minutes ran out before the steps


def test_a_poems_run_needs_its_cache(tmp_path):
    with pytest.raises(SystemExit, match="needs --cache"):
        main(["train", "--what", "poems", "--out", str(tmp_path)])
