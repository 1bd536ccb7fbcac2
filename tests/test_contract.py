"""genrt.contract: manifests round-trip; every problem of a bad one is named; form tokens are all or none."""
import json

import pytest

from genrt.contract import FORM_TOKENS, ManifestError, PoemsManifest, read_manifest, write_manifest

from .fixtures_poems import TINY_FORM_VOCAB, TINY_VOCAB


def manifest(vocab):
    return PoemsManifest(vocab=tuple(vocab), d_model=32, num_heads=4, num_encoder_layers=2, num_decoder_layers=2,
                         dim_feedforward=64, max_len=80)


def write(tmp_path, vocab):
    path = write_manifest(tmp_path, manifest(vocab))
    for name in ("encoder.onnx", "decoder.onnx"):
        (tmp_path / name).write_bytes(b"")
    return path


@pytest.mark.parametrize("vocab", [TINY_VOCAB, TINY_FORM_VOCAB])
def test_poems_manifest_round_trips(tmp_path, vocab):
    write(tmp_path, vocab)
    assert read_manifest(tmp_path) == manifest(vocab)


def test_some_form_tokens_without_the_others_are_named(tmp_path):
    write(tmp_path, TINY_VOCAB + ["<qijue>"])
    with pytest.raises(ManifestError, match="only some form tokens"):
        read_manifest(tmp_path)


def test_every_value_problem_is_listed_at_once(tmp_path):
    path = write(tmp_path, TINY_VOCAB)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["vocab"] = ["x", "x"] + data["vocab"][2:]
    data["d_model"] = 30
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ManifestError) as err:
        read_manifest(tmp_path)
    assert len(err.value.problems) == 3
    assert all(key in str(err.value) for key in ("not divisible", "special tokens", "duplicate"))


def test_a_missing_field_is_named(tmp_path):
    path = write(tmp_path, TINY_VOCAB)
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["max_len"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ManifestError, match="missing field 'max_len'"):
        read_manifest(tmp_path)


def test_form_token_names_match_the_forms_ascii_names():
    from genrt.text.forms import FORMS
    assert set(FORM_TOKENS) == {f.aliases[0] for f in FORMS.values()}
