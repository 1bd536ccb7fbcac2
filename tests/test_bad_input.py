"""Table-driven bad input over the CLI, the model directory and checkpoint paths.

Every case must end with exit code 2, exactly one line on stderr (no traceback), nothing on stdout, and nothing
written outside the requested output folder (nor the folder itself, for bad options).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from genrt.cli import main

FACES_CASES = [
    (["--n", "0"], "--n"), (["--n", "-1"], "--n"), (["--n", "x"], "--n"), (["--n", "100001"], "--n"),
    (["--n", "1.5"], "--n"), (["--batch-size", "0"], "--batch-size"), (["--batch-size", "5000"], "--batch-size"),
    (["--seed", "abc"], "--seed"), (["--truncation", "0"], "--truncation"), (["--truncation", "2"], "--truncation"),
    (["--truncation", "nan"], "--truncation"), (["--truncation", "-inf"], "--truncation"),
    (["--interpolate", "1"], "--interpolate"), (["--interpolate", "200000"], "--interpolate"),
    (["--nrow", "0"], "--nrow"), (["--nrow", "65"], "--nrow"), (["--threads", "0"], "--threads"),
    (["--threads", "2.5"], "--threads"), (["--provider", "tpu"], "--provider"),
    (["--precision", "int4"], "--precision"), (["--n", "2", "--interpolate", "3"], "--interpolate"),
    (["--bogus"], "--bogus"),
    # resources, seeds and names (issue: nothing lost, nothing hung)
    (["--threads", "100000"], "--threads"), (["--threads", "257"], "--threads"), (["--seed", "-1"], "--seed"),
    (["--seed", "1.5"], "--seed"), (["--seed", "-99999999999999999999"], "--seed"), (["-o", ""], "--out"),
    (["-o", "   "], "--out"), (["--n", "99999999999999999999999"], "--n"), (["--batch-size", "-1"], "--batch-size"),
    (["--interpolate", "10000000000"], "--interpolate"),
]

POEM_CASES = [
    (["春江", "--max-new-tokens", "0"], "--max-new-tokens"), (["春江", "--max-new-tokens", "5000"], "--max-new-tokens"),
    (["春江", "--num-beams", "0"], "--num-beams"), (["春江", "--num-beams", "65"], "--num-beams"),
    (["春江", "--length-penalty", "inf"], "--length-penalty"), (["春江", "--temperature", "-1"], "--temperature"),
    (["春江", "--temperature", "nan"], "--temperature"), (["春江", "--top-k", "-1"], "--top-k"),
    (["春江", "--top-p", "1.5"], "--top-p"), (["春江", "--top-p", "nan"], "--top-p"),
    (["春江", "--repetition-penalty", "0"], "--repetition-penalty"),
    (["春江", "--no-repeat-ngram-size", "-2"], "--no-repeat-ngram-size"),
    (["春江", "--max-char-repeats", "x"], "--max-char-repeats"),
    (["春江", "--num-return-sequences", "0"], "--num-return-sequences"),
    (["春江", "--num-return-sequences", "65"], "--num-return-sequences"), (["春江", "--best-of", "0"], "--best-of"),
    (["春江", "--seed", "-5", "--do-sample"], "--seed"), (["春江", "--greedy", "--best-of", "2"], "best_of"),
    (["春江", "--num-beams", "2", "--num-return-sequences", "3"], "num_return_sequences"),
    (["春江", "--do-sample", "--num-beams", "2", "--best-of", "2"], "use one or the other"),
    (["春江", "--form", "sonnet"], "sonnet"), (["春江", "--rhyme"], "rhyme"),
    (["春江", "--tonal"], "needs a form"), (["春江", "--form", "wujue", "--rhyme", "tang"], "--rhyme"),
    (["春江", "--form", "wujue", "--tonal", "--rhyme", "modern"], "平水韵"),
    (["春江", "--form", "wujue", "--tonal", "--acrostic", "一七一一"], "tonal pattern"),
    (["春江", "--stream", "--json"], "--stream"), (["春江", "明月", "--stream"], "--stream"),
    (["春江☃", "--continue"], "vocabulary"), ([""], "empty"), ([], "PROMPT"), (["☃"], "vocabulary"),
    (["春" * 300], "at most"), (["春江", "--threads", "-1"], "--threads"), (["春江", "--provider", "x"], "--provider"),
    (["春江", "--threads", "100000"], "--threads"), (["春江", "--num-beams", "65"], "num-beams"),
    (["春江", "--do-sample", "--num-return-sequences", "65"], "num-return-sequences"),
]

# model directory breakages: (file, how) -> a word the error must contain
MODEL_DIR_CASES = [
    ("manifest.json", "delete", "manifest.json"), ("manifest.json", "garbage", "JSON"),
    ("manifest.json", "list", "object"), ("manifest.json", "version", "format_version"),
    ("manifest.json", "kind", "kind"), ("manifest.json", "escape", ".."), ("manifest.json", "absolute", "absolute"),
    ("manifest.json", "max_len", "position table"), ("manifest.json", "generation", "generation"),
    ("manifest.json", "t2s_missing", "missing file nowhere.json"), ("decoder.onnx", "delete", "decoder.onnx"),
    ("decoder.onnx", "garbage", "decoder.onnx"), ("encoder.onnx", "empty", "encoder.onnx"),
    ("t2s.json", "garbage", "t2s.json"), ("t2s.json", "list", "t2s.json"),
    ("manifest.json", "nested", "nested too deeply"), ("manifest.json", "layers", "num_decoder_layers is"),
    ("manifest.json", "width", "d_model is"), ("manifest.json", "temperature", "generation.sample: temperature"),
    ("manifest.json", "max_new_tokens", "generation.default: max_new_tokens"),
    ("manifest.json", "graphs", "graphs has"), ("manifest.json", "huge", "genrt reads at most"),
    ("t2s.json", "nested", "nested too deeply"), ("decoder.onnx", "varints", "decoder.onnx"),
]


def run(args: list[str]):
    return CliRunner().invoke(main, args)


def assert_one_line_error(result, word: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == "", result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and word in lines[0], result.stderr


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("args, word", FACES_CASES)
def test_faces_bad_options(tiny_faces_model, tmp_path, args, word):
    before = files_under(tmp_path)
    out = tmp_path / "out"
    assert_one_line_error(run(["faces", "--model", str(tiny_faces_model), "-o", str(out), *args]), word)
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("args, word", POEM_CASES)
def test_poem_bad_input(tiny_form_poems_dir, tmp_path, args, word, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run(["poem", *args, "--model", str(tiny_form_poems_dir)]), word)
    assert list(tmp_path.iterdir()) == []


def break_poems_dir(model: Path, file: str, how: str) -> None:
    path = model / file
    manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    edits = {"version": {"format_version": 99}, "kind": {"kind": "faces-dcgan"},
             "escape": {"decoder_file": "../decoder.onnx"}, "absolute": {"encoder_file": "/etc/passwd"},
             "max_len": {"max_len": 10_000}, "generation": {"generation": {"default": {"temp": 1}}},
             "t2s_missing": {"t2s_file": "nowhere.json"}, "layers": {"num_decoder_layers": 10**6},
             "width": {"d_model": 2**40}, "temperature": {"generation": {"sample": {"temperature": 0.0}}},
             "max_new_tokens": {"generation": {"default": {"max_new_tokens": 10**6}}},
             "graphs": {"graphs": {f"g{i}": {"file": f"g{i}.onnx"} for i in range(100_000)}}}
    if how == "delete":
        path.unlink()
    elif how == "garbage":
        path.write_bytes(b"\x00 not what it should be")
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "list":
        path.write_text("[1, 2]")
    elif how == "nested":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif how == "huge":
        with open(path, "r+b") as f:
            f.truncate(65 << 20)                      # sparse: a manifest over genrt's read limit
    elif how == "varints":
        path.write_bytes(bytes([8, 1]) * 5_000_000)
    else:
        manifest.update(edits[how])
        path.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")


@pytest.mark.parametrize("file, how, word", MODEL_DIR_CASES)
def test_broken_poem_model_dirs_are_named(tiny_poems_dir, tmp_path, file, how, word):
    model = Path(shutil.copytree(tiny_poems_dir, tmp_path / "model"))
    break_poems_dir(model, file, how)
    assert_one_line_error(run(["poem", "春江", "--model", str(model)]), word)
    assert_one_line_error(run(["score", "春江", "春江花", "--model", str(model)]), word)


@pytest.mark.parametrize("content, word", [
    (None, "no such file"), (b"", "empty"), (b"PK\x03\x04 truncated", "checkpoint"), (b"not a checkpoint", "checkpoint"),
])
def test_bad_checkpoint_paths_are_one_line(tmp_path, content, word, capsys):
    from export.faces import main as export_faces_main
    ckpt = tmp_path / "c.pt"
    if content is not None:
        ckpt.write_bytes(content)
    with pytest.raises(SystemExit) as info:
        export_faces_main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "out")])
    assert word in str(info.value).lower() and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_faces_checkpoint_given_to_the_poem_exporter_is_named(tiny_faces_checkpoint, tmp_path):
    from export.poems import main as export_poems_main
    with pytest.raises(SystemExit) as info:
        export_poems_main(["--checkpoint", str(tiny_faces_checkpoint), "--out", str(tmp_path / "out")])
    assert "faces-dcgan" in str(info.value) and not (tmp_path / "out").exists()


def test_the_poem_exporter_refuses_a_non_empty_out(tiny_poems_checkpoint, tmp_path):
    from export.poems import main as export_poems_main
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="--force"):
        export_poems_main(["--checkpoint", str(tiny_poems_checkpoint), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# ---------------------------------------------------------------- faces model directories and run-time failures

FACES_DIR_CASES = [
    ({"nz": 10**9}, "nz is"), ({"image_size": 10**6}, "image_size is"), ({"channels": 7}, "channels is"),
    ({"graphs": {f"g{i}": {"file": "x"} for i in range(1000)}}, "graphs has"), ("nested", "nested too deeply"),
    ({"graph_file": "../generator.onnx"}, ".."), ({"nz": -1}, "nz must"), ({"nz": 1.5}, "'nz' must be int"),
]


@pytest.mark.parametrize("change, word", FACES_DIR_CASES)
def test_broken_faces_model_dirs_are_named(model_copy, tmp_path, change, word):
    manifest = model_copy / "manifest.json"
    if change == "nested":
        manifest.write_text("{\"a\": " * 50_000 + "1" + "}" * 50_000)
    else:
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **change}))
    assert_one_line_error(run(["faces", "--model", str(model_copy), "-o", str(tmp_path / "out")]), word)
    assert not (tmp_path / "out").exists()


class FailingSession:
    """A session whose graph fails at run time, or returns one image fewer than asked."""

    def __init__(self, how: str):
        self.how = how

    def run(self, names, feeds):
        from genrt.runtime import GRAPH_RUN_ERRORS
        if self.how == "fails":
            raise GRAPH_RUN_ERRORS[0]("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code\nstack")
        return [np.zeros((len(feeds["z"]) - 1, 64, 64, 3), dtype=np.uint8)]


@pytest.mark.parametrize("how, word", [("fails", "generator.onnx failed"), ("short", "returned")])
def test_a_graph_failing_at_run_time_is_one_line_and_writes_nothing(monkeypatch, tmp_path, how, word):
    from genrt.contract import FacesManifest
    from genrt.faces import FaceGenerator
    fake = FaceGenerator(FacesManifest(nz=4, image_size=64), FailingSession(how), tmp_path, "cpu")
    monkeypatch.setattr(FaceGenerator, "load", classmethod(lambda cls, *a, **k: fake))
    result = run(["faces", "--n", "16", "-o", str(tmp_path / "out"), "--seed", "0"])
    assert_one_line_error(result, word)
    assert not (tmp_path / "out").exists()                 # the folder the run made goes with it


def test_no_home_directory_searches_only_the_bundled_models(monkeypatch, tmp_path):
    def no_home(self):
        raise RuntimeError("Could not determine home directory.")
    monkeypatch.delenv("GENRT_MODELS", raising=False)
    monkeypatch.setattr(Path, "expanduser", no_home)
    result = run(["faces", "--n", "1", "-o", str(tmp_path / "out"), "--seed", "0", "--no-grid"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["face_0000.png"]


@pytest.mark.parametrize("line", ["[" * 100_000, '{"prompt": ["春"], "poem": "江"}', '{"prompt": "春"}', "7"])
def test_bad_jsonl_lines_are_named(tmp_path, line):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(line + "\n", encoding="utf-8")
    assert_one_line_error(run(["score", "--jsonl", str(pairs), "--model", str(tmp_path)]), "--jsonl line 1")
