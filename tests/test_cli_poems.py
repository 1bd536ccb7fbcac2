"""`genrt poem` through click's runner: output formats, streaming, and exit-2 errors."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from genrt.cli import main
from genrt.runtime import bundled_model_dir


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


@pytest.mark.parametrize("mode", [(), ("--greedy",), ("--do-sample", "--seed", "5"), ("--num-beams", "2"),
                                  ("--continue", "--greedy")])
def test_stream_prints_the_poem_of_the_same_command_or_refuses(tiny_poems_dir, mode):
    """--stream never switches mode: it prints what the command without it prints, or says it cannot."""
    assert run(tiny_poems_dir, "春江", "--stream", "--max-new-tokens", "12", "--json").exit_code == 2
    streamed = run(tiny_poems_dir, "春江", *mode, "--stream", "--max-new-tokens", "12")
    plain = run(tiny_poems_dir, "春江", *mode, "--max-new-tokens", "12", "--json")
    if streamed.exit_code == 2:                                   # a mode the streaming decoder does not offer
        assert "--stream" in streamed.stderr and len(streamed.stderr.splitlines()) == 1, streamed.output
        assert mode not in (("--greedy",), ("--do-sample", "--seed", "5"), ("--continue", "--greedy"))
        return
    assert streamed.exit_code == 0, streamed.output
    assert streamed.stdout.replace("\n", "") == "《春江》" + json.loads(plain.stdout)[0][0]["text"]
    assert streamed.stdout == run(tiny_poems_dir, "春江", *mode, "--max-new-tokens", "12").stdout
    finished = run(tiny_poems_dir, "春江", *mode, "--stream", "--max-new-tokens", "60", "--free-shape")
    assert finished.stdout == run(tiny_poems_dir, "春江", *mode, "--max-new-tokens", "60", "--free-shape").stdout


def test_sampling_with_seed_is_reproducible(tiny_poems_dir):
    args = ("春江", "--do-sample", "--temperature", "1.3", "--top-k", "20", "--seed", "5", "--max-new-tokens", "12")
    assert run(tiny_poems_dir, *args).output == run(tiny_poems_dir, *args).output


@pytest.mark.parametrize("args, message", [
    (("",), "the prompt is empty"),
    ((), "give a PROMPT"),
    (("☃☃",), "no character of the prompt is in the model's vocabulary"),
    (("春江", "--num-beams", "0"), "'--num-beams'"),
    (("春江", "--num-beams", "100000", "--max-new-tokens", "4"), "'--num-beams'"),
    (("春江", "--do-sample", "--top-p", "0"), "'--top-p'"),
    (("春江", "--do-sample", "--temperature", "0"), "'--temperature'"),
    (("春江", "--do-sample", "--temperature", "inf"), "'--temperature'"),
    (("春江", "--do-sample", "--temperature", "nan"), "'--temperature'"),
    (("春江", "--repetition-penalty", "inf"), "'--repetition-penalty'"),
    (("春江", "--num-beams", "2", "--length-penalty", "nan"), "'--length-penalty'"),
    (("春江", "--max-new-tokens", "x"), "'--max-new-tokens'"),
    (("春江", "--max-char-repeats", "-1"), "'--max-char-repeats'"),
    (("春江", "--seed", "-1", "--do-sample"), "'--seed'"),
    (("春江", "--greedy", "--temperature", "0.5"), "only applies when sampling"),
    (("春江", "--do-sample", "--num-beams", "2", "--best-of", "3"), "use one or the other"),
    (("春" * 300,), "accepts at most"),
])
def test_bad_input_exits_2_with_one_line(tiny_poems_dir, args, message):
    result = run(tiny_poems_dir, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.output


def test_sampling_without_seed_prints_the_seed_that_reproduces_it(tiny_poems_dir):
    first = run(tiny_poems_dir, "春江", "--do-sample", "--max-new-tokens", "12")
    assert first.exit_code == 0, first.output
    seed = next(line for line in first.stderr.splitlines() if line.startswith("seed: ")).split()[1]
    again = run(tiny_poems_dir, "春江", "--do-sample", "--max-new-tokens", "12", "--seed", seed)
    assert again.stdout == first.stdout


def test_a_cut_poem_says_so_on_stderr(tiny_poems_dir):
    result = run(tiny_poems_dir, "春江", "--max-new-tokens", "3")
    assert result.exit_code == 0
    assert "was cut at 3 new characters" in result.stderr and "cut" not in result.stdout


def test_dropped_prompt_characters_are_named(tiny_poems_dir):
    result = run(tiny_poems_dir, "春江☃", "--max-new-tokens", "5")
    assert result.exit_code == 0, result.output
    assert "left out of 《春江☃》: ☃" in result.stderr
    result = run(tiny_poems_dir, "春江hello", "--max-new-tokens", "5")
    assert "left out of 《春江hello》: h, e, l, o" in result.stderr         # each once, in order, as a list
    result = run(tiny_poems_dir, "hello")
    assert result.exit_code == 2 and "vocabulary: h, e, l, o" in result.stderr


def test_a_length_asked_for_is_not_reported_as_cut(tiny_poems_dir):
    result = run(tiny_poems_dir, "春江", "--free-shape", "--min-new-tokens", "6", "--max-new-tokens", "6", "--greedy")
    assert result.exit_code == 0, result.output
    assert "cut" not in result.stderr


def test_show_settings_prints_each_modes_resolved_options(tiny_poems_dir, tmp_path):
    import shutil

    from genrt.poems.generator import PoemGenerator

    model = Path(shutil.copytree(tiny_poems_dir, tmp_path / "poems"))
    manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    manifest["generation"] = {"default": {"max_char_repeats": 2}, "no_options": {"do_sample": True, "best_of": 4,
                              "top_k": 40, "seed": 0}, "beam": {"do_sample": True, "top_k": 40, "seed": 0},
                              "sample": {"temperature": 0.9}}
    (model / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    generator = PoemGenerator.load(model, threads=1)
    table = json.loads(run(model, "--show-settings", "--json").stdout)
    assert list(table) == ["genrt poem PROMPT", "genrt poem PROMPT --num-beams 4", "genrt poem PROMPT --num-beams 4 "
                           "--greedy", "genrt poem PROMPT --do-sample", "genrt poem PROMPT --greedy"]
    assert table["genrt poem PROMPT"]["best_of"] == 4 and table["genrt poem PROMPT"]["seed"] == 0
    assert table["genrt poem PROMPT --num-beams 4"]["seed"] == generator.options(num_beams=4).seed == 0
    assert table["genrt poem PROMPT --do-sample"]["seed"] is None
    assert table["genrt poem PROMPT --do-sample"]["temperature"] == 0.9
    assert "temperature" not in table["genrt poem PROMPT --greedy"]             # only what the mode uses
    text = run(model, "--show-settings").stdout
    assert "--best-of 4" in text and "--seed 0" in text and "--seed (drawn, printed)" in text


def test_help_names_where_defaults_come_from():
    result = CliRunner().invoke(main, ["poem", "--help"], terminal_width=200)
    assert "--show-settings" in result.output and "Examples:" in result.output
    assert "recommended setting]" not in result.output
    seed_help = result.output.split("--seed INTEGER RANGE")[1].split("--form")[0]
    assert "0" in seed_help and "--num-beams" in seed_help and "printed" in seed_help


needs_bundled = pytest.mark.skipif(not bundled_model_dir("poems_int8").is_dir(), reason="no bundled poem model")


@needs_bundled
@pytest.mark.parametrize("command", ["poem", "score"])
def test_help_examples_run_on_the_bundled_model(command, tmp_path, monkeypatch):
    from tests.cli_examples import example_argvs

    examples = example_argvs(command)
    assert 2 <= len(examples) <= 4
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pairs.jsonl").write_text('{"prompt": "静夜思", "poem": "床前明月光，疑是地上霜。"}\n', encoding="utf-8")
    for argv in examples:
        result = CliRunner().invoke(main, [*argv, "--threads", "1"])
        assert result.exit_code == 0, (argv, result.output)


def test_traditional_prompt_gives_the_simplified_prompts_poem(tiny_poems_dir):
    traditional = run(tiny_poems_dir, "東風", "--max-new-tokens", "10", "--json")   # 東 -> 东 (in the vocab)
    simplified = run(tiny_poems_dir, "东风", "--max-new-tokens", "10", "--json")
    assert traditional.exit_code == 0, traditional.output
    assert json.loads(traditional.stdout)[0][0]["text"] == json.loads(simplified.stdout)[0][0]["text"]
    assert "left out" not in traditional.stderr


def test_missing_model_exits_2(tmp_path):
    result = CliRunner().invoke(main, ["poem", "春江", "--model", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such directory" in result.output


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


def score(model, *args):
    return CliRunner().invoke(main, ["score", *args, "--model", str(model), "--threads", "1"])


def test_score_prints_json_per_pair_and_reads_jsonl(tiny_poems_dir, tmp_path):
    result = score(tiny_poems_dir, "春江", "春江花月夜。", "明月", "明月光")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [d["tokens"] for d in data] == [7, 4] and all(d["logprob"] < 0 for d in data)
    lines = tmp_path / "pairs.jsonl"
    lines.write_text('{"prompt": "春江", "poem": "春江花月夜。"}\n\n', encoding="utf-8")
    from_file = score(tiny_poems_dir, "--jsonl", str(lines))
    assert json.loads(from_file.stdout)[0]["logprob"] == pytest.approx(data[0]["logprob"], abs=1e-6)


@pytest.mark.parametrize("args, message", [
    (("春江",), "PROMPT POEM pairs"),
    ((), "nothing to score"),
    (("春江", "春江☃"), "outside the model's vocabulary"),
    (("春江", "明月", "--continue"), "must start with its prompt line"),
])
def test_score_errors_are_one_line(tiny_poems_dir, args, message):
    result = score(tiny_poems_dir, *args)
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1, result.output


def test_tonal_and_pingshui_rhyme(tiny_poems_dir):
    from genrt.poems.verse.tonal import pingshui_rhyme_problem, tonal_problem
    result = run(tiny_poems_dir, "春江", "--form", "wujue", "--tonal", "--json")
    assert result.exit_code == 0, result.output
    assert tonal_problem(json.loads(result.output)[0][0]["text"], "wujue") is None
    result = run(tiny_poems_dir, "春江", "--form", "wujue", "--rhyme", "pingshui", "--json")
    assert pingshui_rhyme_problem(json.loads(result.output)[0][0]["text"], "wujue") is None
    assert run(tiny_poems_dir, "春江", "--form", "wujue", "--rhyme").exit_code == 0     # bare --rhyme: modern


def test_revise_prints_whole_poems_best_first_and_json(tiny_poems_dir):
    import json as json_module
    from click.testing import CliRunner
    from genrt.cli import main
    base = ["--model", str(tiny_poems_dir), "--threads", "1"]
    made = CliRunner().invoke(main, ["poem", "春江", "--json", *base])
    poem = json_module.loads(made.stdout)[0][0]["text"]
    result = CliRunner().invoke(main, ["revise", "春江", poem, "--line", "2", "-n", "2", *base])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert 1 <= len(lines) <= 2 and all(line.split("，")[0] == poem.split("，")[0] for line in lines)
    result = CliRunner().invoke(main, ["revise", "春江", poem, "--line", "2", "--json", *base])
    scores = [v["score"] for v in json_module.loads(result.stdout)]
    assert scores == sorted(scores, reverse=True)
    bad = CliRunner().invoke(main, ["revise", "春江", poem, "--line", "99", *base])
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: line must be a verse number")
