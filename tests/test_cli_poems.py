"""`genrt poem` through click's runner: output formats, streaming, and exit-2 errors."""
import json

import pytest
from click.testing import CliRunner

from genrt.cli import main


def run(model, *args):
    return CliRunner().invoke(main, ["poem", *args, "--model", str(model), "--threads", "1"])


def test_prints_a_poem(tiny_poems_dir):
    result = run(tiny_poems_dir, "春江花月夜", "--max-new-tokens", "10")
    assert result.exit_code == 0, result.output
    assert "《春江花月夜》" in result.output


def test_json_output_with_beams(tiny_poems_dir):
    result = run(tiny_poems_dir, "春江", "明月", "--num-beams", "3", "--num-return-sequences", "2",
                 "--max-new-tokens", "8", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [len(x) for x in data] == [2, 2]
    assert {"prompt", "text", "score", "finished"} <= set(data[0][0])


def test_stream_matches_plain_output(tiny_poems_dir):
    streamed = run(tiny_poems_dir, "春江", "--stream", "--max-new-tokens", "12", "--json")
    assert streamed.exit_code == 2
    streamed = run(tiny_poems_dir, "春江", "--stream", "--max-new-tokens", "12")
    plain = run(tiny_poems_dir, "春江", "--max-new-tokens", "12", "--json")
    text = json.loads(plain.stdout)[0][0]["text"]
    assert streamed.exit_code == 0
    assert streamed.stdout.replace("\n", "") == text


def test_sampling_with_seed_is_reproducible(tiny_poems_dir):
    args = ("春江", "--do-sample", "--temperature", "1.3", "--top-k", "20", "--seed", "5", "--max-new-tokens", "12")
    assert run(tiny_poems_dir, *args).output == run(tiny_poems_dir, *args).output


@pytest.mark.parametrize("args, message", [
    (("",), "the prompt is empty"),
    ((), "give a PROMPT"),
    (("☃☃",), "no character of the prompt is in the model's vocabulary"),
    (("春江", "--num-beams", "0"), "num_beams must be >= 1"),
    (("春江", "--do-sample", "--top-p", "0"), "top_p must be in (0, 1]"),
    (("春江", "--do-sample", "--temperature", "0"), "temperature must be > 0"),
    (("春江", "--temperature", "0.5"), "only applies when sampling"),
    (("春江", "--do-sample", "--num-beams", "2"), "cannot be combined"),
    (("春" * 300,), "accepts at most"),
])
def test_bad_input_exits_2_with_one_line(tiny_poems_dir, args, message):
    result = run(tiny_poems_dir, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output


def test_missing_model_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["poem", "春江", "--model", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "not a directory" in result.output


def test_form_and_acrostic_options(tiny_poems_dir):
    result = run(tiny_poems_dir, "--acrostic", "春夏秋冬", "--form", "qijue", "--json")
    assert result.exit_code == 0, result.output
    text = json.loads(result.stdout)[0][0]["text"]
    assert len(text) == 32 and text[0] == "春"
    bad = run(tiny_poems_dir, "春江", "--form", "haiku")
    assert bad.exit_code == 2 and "haiku" in bad.output


def test_form_token_switch_reaches_the_model(tiny_form_poems_dir):
    """On a model trained with form tokens, --no-form-token decodes from a different source."""
    scores = {}
    for flag in ("--form-token", "--no-form-token"):
        result = run(tiny_form_poems_dir, "春江", "--form", "wulv", "--num-beams", "2", "--json", flag)
        assert result.exit_code == 0, result.output
        poem = json.loads(result.stdout)[0][0]
        assert len(poem["text"]) == 48
        scores[flag] = poem["score"]
    assert scores["--form-token"] != scores["--no-form-token"]
