"""A crafted manifest is refused at load in one ManifestError, quickly: sizes, entry counts, nesting, file size,
out-of-range recommended settings; genrt's own ONNX reader gives up on garbage instead of walking it."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from genrt import limits
from genrt.contract import (FACES_KIND, FORMAT_VERSION, POEMS_KIND, SPECIAL_TOKENS, ManifestError, read_manifest)
from genrt.onnx_file import position_table_rows


def poems_manifest(**changes) -> dict:
    data = {"format_version": FORMAT_VERSION, "kind": POEMS_KIND, "vocab": list(SPECIAL_TOKENS) + list("春江花月夜，。"),
            "d_model": 8, "num_heads": 2, "num_encoder_layers": 1, "num_decoder_layers": 1, "dim_feedforward": 16,
            "max_len": 16}
    data.update(changes)
    return data


def faces_manifest(**changes) -> dict:
    data = {"format_version": FORMAT_VERSION, "kind": FACES_KIND, "nz": 4, "image_size": 8}
    data.update(changes)
    return data


def model_dir(tmp_path: Path, data: dict | str) -> Path:
    for name in ("encoder.onnx", "decoder.onnx", "generator.onnx"):
        (tmp_path / name).write_bytes(b"")
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    (tmp_path / "manifest.json").write_text(text, encoding="utf-8")
    return tmp_path


def refused(folder: Path, word: str, seconds: float = 2.0) -> ManifestError:
    started = time.perf_counter()
    with pytest.raises(ManifestError) as info:
        read_manifest(folder)
    assert word in str(info.value) and time.perf_counter() - started < seconds, str(info.value)[:300]
    return info.value


def test_the_reference_manifests_load(tmp_path):
    assert read_manifest(model_dir(tmp_path, poems_manifest())).d_model == 8
    assert read_manifest(model_dir(tmp_path, faces_manifest())).nz == 4


@pytest.mark.parametrize("field, value", [
    ("num_decoder_layers", 10**6), ("num_encoder_layers", 10**9), ("d_model", 2**40), ("num_heads", 10**5),
    ("dim_feedforward", 10**12), ("max_len", 10**8), ("num_decoder_layers", 257),
])
def test_absurd_poem_sizes_are_refused(tmp_path, field, value):
    refused(model_dir(tmp_path, poems_manifest(**{field: value})), f"{field} is")


@pytest.mark.parametrize("field, value", [("nz", 10**9), ("image_size", 10**6), ("channels", 5), ("channels", 10**4)])
def test_absurd_face_sizes_are_refused(tmp_path, field, value):
    refused(model_dir(tmp_path, faces_manifest(**{field: value})), f"{field} is")


@pytest.mark.parametrize("depth", [2_000, 100_000])
@pytest.mark.parametrize("where", ["top", "training"])
def test_deeply_nested_json_is_one_error(tmp_path, depth, where):
    nested = "[" * depth + "]" * depth
    text = nested if where == "top" else json.dumps(poems_manifest(training={}))[:-1] + f', "metrics": {nested}}}'
    refused(model_dir(tmp_path, text), "nested too deeply")


def test_a_huge_manifest_is_refused_before_it_is_read(tmp_path):
    folder = model_dir(tmp_path, poems_manifest())
    with open(folder / "manifest.json", "r+b") as f:
        f.truncate(limits.MAX_MANIFEST_BYTES + 1)             # sparse: nothing is really written
    refused(folder, "genrt reads at most")


def test_a_quarter_million_informative_graph_entries_are_refused_without_resolving_them(tmp_path):
    graphs = {f"g{i}": {"file": f"missing{i}.onnx"} for i in range(250_000)}
    refused(model_dir(tmp_path, poems_manifest(graphs=graphs)), "graphs has 250,000 entries", seconds=5)


def test_an_oversized_vocab_is_refused(tmp_path):
    vocab = list(SPECIAL_TOKENS) + [f"t{i}" for i in range(limits.MODEL_SIZE_LIMITS["vocab"])]
    refused(model_dir(tmp_path, poems_manifest(vocab=vocab)), "vocab has", seconds=10)


@pytest.mark.parametrize("section, key, value, word", [
    ("default", "max_new_tokens", 10**6, "max_new_tokens must be <="),
    ("default", "max_new_tokens", 0, "max_new_tokens must be >="),
    ("beam", "length_penalty", 50.0, "length_penalty must be between"),
    ("beam", "length_penalty", float("nan"), "length_penalty must be a finite"),
    ("sample", "temperature", 0.0, "temperature must be > 0"),
    ("sample", "temperature", 1e9, "temperature must be between"),
    ("sample", "top_p", 1.5, "top_p must be in (0, 1]"),
    ("sample", "top_k", -1, "top_k must be >= 0"),
    ("no_options", "best_of", 1000, "best_of must be <="),
    ("no_options", "seed", -5, "seed must be an integer from 0 to"),
    ("default", "repetition_penalty", -1.0, "repetition_penalty must be > 0"),
    ("default", "no_repeat_ngram_size", -2, "no_repeat_ngram_size must be >= 0"),
    ("default", "max_char_repeats", -1, "max_char_repeats must be >= 0"),
])
def test_out_of_range_recommended_settings_are_refused_at_load(tmp_path, section, key, value, word):
    error = refused(model_dir(tmp_path, poems_manifest(generation={section: {key: value}})), word)
    assert f"generation.{section}" in str(error)


def test_recommended_settings_in_range_load(tmp_path):
    generation = {"default": {"max_char_repeats": 2, "repetition_penalty": 1.2},
                  "no_options": {"do_sample": True, "best_of": 4, "temperature": 0.8, "top_k": 40, "seed": 0},
                  "beam": {"do_sample": True, "top_p": 0.95}, "sample": {"temperature": 0.9, "top_k": 100}}
    assert read_manifest(model_dir(tmp_path, poems_manifest(generation=generation))).generation == generation


@pytest.mark.parametrize("content", [
    bytes([8, 1]) * 2_000_000,          # millions of tiny valid fields
    b"\x00" * 4_000_000,               # field number 0
    b"\x08" + b"\xff" * 1_000_000,     # a varint that never ends
    b"\x3a\xff\xff\xff\xff\x0f",        # a graph field longer than the file
    b"\x0b\x0c",                        # group wire types
    b"",
])
def test_the_onnx_reader_gives_up_quickly_on_garbage(tmp_path, content):
    path = tmp_path / "decoder.onnx"
    path.write_bytes(content)
    started = time.perf_counter()
    assert position_table_rows(path) is None
    assert time.perf_counter() - started < 2
