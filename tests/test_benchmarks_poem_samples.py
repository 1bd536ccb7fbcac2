"""benchmarks.poem_samples: README's sample rows, each one `genrt poem` run through click's runner."""
import pytest

import benchmarks.poem_samples as samples
from tests.fixtures_poems import HAN


def test_rows_cover_every_title_and_mode_then_the_extra_rows():
    rows = samples.sample_rows()
    assert len(rows) == len(samples.TITLES) * len(samples.MODES) + len(samples.EXTRA_ROWS)
    assert rows[0] == ("春江花月夜", (), "no options")
    assert rows[1] == ("春江花月夜", ("--num-beams", "4"), "--num-beams 4")
    assert rows[-1][0] == "靜夜思"                                          # traditional input, mapped at run time


def test_run_row_is_the_cli_poem_and_seeded_rows_repeat(tiny_poems_dir):
    greedy = samples.run_row(str(tiny_poems_dir), "春江", ("--greedy",))
    assert greedy and set(greedy) <= set(HAN) | set("，。？！")
    seeded = [samples.run_row(str(tiny_poems_dir), "春江", ("--do-sample", "--seed", "1")) for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_run_row_names_a_failing_command(tiny_poems_dir):
    with pytest.raises(RuntimeError, match="genrt poem 春江 --num-beams 0 failed"):
        samples.run_row(str(tiny_poems_dir), "春江", ("--num-beams", "0"))


def test_main_writes_the_markdown_table(tiny_poems_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(samples, "sample_rows", lambda: [("春江", ("--greedy",), "--greedy"), ("月夜", (), "no options")])
    out = tmp_path / "samples.md"
    samples.main(["--model", str(tiny_poems_dir), "--out", str(out)])
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"Model {tiny_poems_dir}." and lines[2] == "| prompt | decoding | poem |"
    assert lines[4].startswith("| 春江 | --greedy | ") and lines[5].startswith("| 月夜 | no options | ")
