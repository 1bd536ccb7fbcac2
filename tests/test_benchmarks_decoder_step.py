"""benchmarks.decoder_step: two model directories timed on the same recorded steps, their logits compared."""
import shutil

import pytest

pytest.importorskip("onnx")

from benchmarks import decoder_step  # noqa: E402


def test_the_same_steps_are_timed_and_compared(tiny_poems_dir, tiny_int8_dir, tmp_path):
    from export.poem_new_kv import upgrade
    new_kv = tmp_path / "new_kv"
    shutil.copytree(tiny_poems_dir, new_kv)
    upgrade(new_kv)
    report = decoder_step.main(["--quick", "--models", str(tiny_poems_dir), str(new_kv), "--rows", "1", "3",
                                "--positions", "0", "17", "--out", str(tmp_path / "d.json")])
    assert [(r["rows"], r["positions"]) for r in report["rows"]] == [(1, 0), (1, 17), (3, 0), (3, 17)]
    assert all(r["a_us"] > 0 and r["b_us"] > 0 and r["logits_identical"] for r in report["rows"])
    text = (tmp_path / "d.md").read_text()
    assert "| 3 | 17 |" in text and "identical" in text and "cache_outputs new" in text
    other = decoder_step.main(["--quick", "--models", str(tiny_poems_dir), str(tiny_int8_dir), "--rows", "2",
                               "--positions", "4", "--out", str(tmp_path / "e.json")])
    assert not other["rows"][0]["logits_identical"] and "differ by" in (tmp_path / "e.md").read_text()


def test_bad_sizes_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        decoder_step.main(["--models", str(tmp_path), str(tmp_path), "--rows", "0"])
    assert "--rows" in capsys.readouterr().err
