"""benchmarks.forms: the constrained-decoding benchmark's prompts, timing wrappers, processor run and report."""
import json

import numpy as np
import pytest

from benchmarks.forms import Timed, TimedModel, make_prompts, micro_benchmark, write_results
from genrt.contract import SPECIAL_TOKENS
from genrt.poems.tokenizer import CharTokenizer


def test_forms_benchmark_compares_with_and_without_form_tokens(tiny_form_poems_dir, tmp_path):
    from benchmarks.forms import main as forms_main
    results = forms_main(["--model", str(tiny_form_poems_dir), "--prompts-per-form", "3", "--forms", "五言绝句",
                          "--threads", "1", "--out", str(tmp_path)])
    rows = results["forms"]
    assert [r["form_token"] for r in rows] == [False, True]
    assert all(r["well_formed_constrained"] == 1.0 and r["prompts"] == 3 for r in rows)
    assert all(0.0 <= r["constraint_changed_output"] <= 1.0 for r in rows)
    md = (tmp_path / "forms.md").read_text(encoding="utf-8")
    assert "form token in source" in md and (tmp_path / "forms.json").is_file()


def test_prompts_are_single_themes_then_pairs_within_the_vocab():
    tok = CharTokenizer(list(SPECIAL_TOKENS) + list("，。") + list("春夏秋"))
    assert make_prompts(tok, 100) == ["春", "夏", "秋", "春夏", "春秋", "夏春", "夏秋", "秋春", "秋夏"]
    assert make_prompts(tok, 4) == ["春", "夏", "秋", "春夏"]


def test_timed_wrappers_pass_results_through_and_count_the_calls():
    class Model:
        manifest = "m"

        def start(self, sources, copies=1):
            return ("cache", len(sources), copies)

        def step(self, tokens, cache):
            return np.arange(6, dtype=np.float32).reshape(2, 3), cache

        def reorder(self, cache, rows):
            return ("reordered", list(rows))

        def join(self, first, second):
            return (first, second)

    timed = TimedModel(Model())
    assert timed.start([[1], [2]], 3) == ("cache", 2, 3)
    logits, cache = timed.step(np.ones((2, 1), np.int64), "c")
    assert cache == "c" and timed.calls == 1 and timed.seconds >= 0
    assert np.array_equal(logits, np.arange(6, dtype=np.float32).reshape(2, 3))
    assert timed.reorder("c", np.array([1, 0])) == ("reordered", [1, 0]) and timed.join("a", "b") == ("a", "b")
    processor = Timed(lambda tokens, lg: lg + 1)
    assert np.array_equal(processor(None, np.zeros(3)), np.ones(3)) and processor.seconds >= 0


def test_micro_benchmark_runs_every_request_at_every_row_count():
    pytest.importorskip("pypinyin")                                      # one of the requests rhymes
    rows = micro_benchmark(vocab_size=60, rows=(1, 2), repeats=1)
    assert [(r["form"], r["acrostic"], r["rhyme"], r["rows"]) for r in rows] == [
        ("五言绝句", None, False, 1), ("五言绝句", None, False, 2), ("七言律诗", "一丁七万", True, 1),
        ("七言律诗", "一丁七万", True, 2), (None, "一丁七万", True, 1), (None, "一丁七万", True, 2)]
    assert all(r["vocab"] == 60 for r in rows)


def test_written_report_formats_each_row(tmp_path):
    results = {"model": "m/poems", "batch": 2, "micro": [
        {"form": "五言绝句", "acrostic": None, "rhyme": False, "rows": 1, "vocab": 100, "median_us": 12.345,
         "mean_us": 15.0}],
        "forms": [{"form": "五言绝句", "rhyme": False, "form_token": True, "prompts": 3,
                   "well_formed_unconstrained": 0.5, "well_formed_constrained": 1.0,
                   "nll_per_token_unconstrained": 2.0, "nll_per_token_constrained": 2.5,
                   "constraint_changed_output": 1 / 3, "step_us": 120.0, "constraint_us": 6.0,
                   "constraint_overhead": 0.05}]}
    write_results(results, tmp_path / "out")
    lines = (tmp_path / "out" / "forms.md").read_text(encoding="utf-8").splitlines()
    assert "Model: `m/poems`, greedy, batch 2." in lines
    assert "| 五言绝句 | False | yes | 3 | 50.0% | 100.0% | 2.000 | 2.500 | 33.3% | 120 | 6.0 | 5.0% |" in lines
    assert "| 五言绝句 | None | False | 1 | 100 | 12.3 | 15.0 |" in lines
    assert json.loads((tmp_path / "out" / "forms.json").read_text(encoding="utf-8")) == results


def test_micro_only_report_has_no_model_table(tmp_path):
    write_results({"micro": []}, tmp_path)
    text = (tmp_path / "forms.md").read_text(encoding="utf-8")
    assert "form token in source" not in text and "Processor alone" in text
