"""benchmarks.measure: per-token figures, the poem prompts and the command line's dispatch to each task."""
import json

import pytest

from benchmarks import measure
from genrt.contract import PROMPT_TITLE, SPECIAL_TOKENS
from genrt.poems.tokenizer import CharTokenizer


def test_per_token_figures_are_per_generated_token():
    """A call makes batch x new_tokens tokens: ms/token and tokens/s describe the same rate."""
    stats = {"median_ms": 64.0, "p90_ms": 80.0, "repeats": 3}
    assert measure._per_token(stats, batch=2) == {**stats, "ms_per_token": 0.5, "tokens_per_s": 2000.0}
    assert measure._per_token(stats, batch=1, new_tokens=32) == {**stats, "ms_per_token": 2.0, "tokens_per_s": 500.0}


def test_poem_sources_cycle_through_the_prompts_in_title_mode():
    vocab = list(SPECIAL_TOKENS) + sorted(set("".join(measure.PROMPTS)))
    tok = CharTokenizer(vocab)
    sources = measure._poem_sources(tok, len(measure.PROMPTS) + 2)
    assert len(sources) == len(measure.PROMPTS) + 2
    assert sources[0] == [tok.index[PROMPT_TITLE]] + tok.encode_text(measure.PROMPTS[0])
    assert sources[len(measure.PROMPTS)] == sources[0] and sources[-1] == sources[1]


def test_main_runs_the_task_and_adds_the_peak_memory(monkeypatch, capsys):
    calls = []
    monkeypatch.setitem(measure.TASKS, "faces-onnx", lambda *args: calls.append(args) or [{"n": 1}])
    monkeypatch.setitem(measure.TASKS, "poems-torch", lambda *args: calls.append(args) or [{"n": 2}])
    monkeypatch.setattr(measure, "poems_ct2", lambda *args: calls.append(args) or [{"n": 3}])
    monkeypatch.setattr(measure, "peak_rss_mb", lambda: 42.0)
    measure.main(["faces-onnx", "--model", "m", "--threads", "2", "--quick"])
    measure.main(["poems-torch", "--checkpoint", "c.pt"])
    measure.main(["poems-ct2", "--checkpoint", "c.pt", "--ct2-quantization", "int8"])
    assert calls == [("m", "cpu", 2, True), ("c.pt", 1, False), ("c.pt", 1, False, "int8")]
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == [[{"n": n, "peak_rss_mb": 42.0}] for n in (1, 2, 3)]


@pytest.mark.parametrize("argv", [["no-such-task"], ["poems-ct2", "--ct2-quantization", "fp16"]])
def test_unknown_tasks_and_precisions_are_refused(argv):
    with pytest.raises(SystemExit) as e:
        measure.main(argv)
    assert e.value.code == 2

