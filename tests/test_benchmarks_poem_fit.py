"""benchmarks.poem_fit: a checkpoint's NLL on training and on validation pairs, scored alike."""
import json

import pytest

torch = pytest.importorskip("torch")

from benchmarks.poem_fit import fit_report, main  # noqa: E402
from trainers.poems import PoemsConfig, train  # noqa: E402


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "run"
    cfg = PoemsConfig(out=str(out), d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                      dim_feedforward=32, threads=1, dry_run=True, steps=4)
    return train(cfg), out / "dry_run" / "cache"


def test_both_splits_are_scored_and_the_gap_is_their_difference(trained):
    checkpoint, cache = trained
    report = fit_report(str(checkpoint), str(cache), batches=2)
    assert report["step"] == 4 and report["batches"] == 2
    for split in ("train", "val"):
        assert report[split]["tokens"] > 0 and report[split]["nll"] > 0
        assert report[split]["ppl"] == pytest.approx(2.718281828 ** report[split]["nll"], rel=1e-6)
    assert report["gap"] == pytest.approx(report["val"]["nll"] - report["train"]["nll"])


def test_validation_matches_what_the_trainer_recorded(trained):
    """The validation half is the trainer's own evaluation: same batches, same model, same number."""
    checkpoint, cache = trained
    recorded = torch.load(checkpoint, map_location="cpu", weights_only=False)["history"][-1]
    report = fit_report(str(checkpoint), str(cache), batches=2)
    assert report["val"]["nll"] == pytest.approx(recorded["nll"], rel=1e-5)


def test_cli_prints_json_and_appends_it(trained, capsys, tmp_path):
    checkpoint, cache = trained
    out = tmp_path / "fit.jsonl"
    for _ in range(2):
        main(["--checkpoint", str(checkpoint), "--cache", str(cache), "--batches", "1", "--out", str(out)])
    assert json.loads(capsys.readouterr().out.splitlines()[0])["batches"] == 1
    assert [json.loads(line)["step"] for line in out.read_text().splitlines()] == [4, 4]


def test_temperatures_score_both_splits_and_one_is_the_plain_nll(trained):
    checkpoint, cache = trained
    report = fit_report(str(checkpoint), str(cache), batches=2, temperatures=(1.0, 0.9))
    for split in ("train", "val"):
        at = report[split]["nll_at_temperature"]
        assert set(at) == {1.0, 0.9} and at[1.0] == pytest.approx(report[split]["nll"], rel=1e-5)
