"""genrt.contract: manifests round-trip; every problem of a bad one is named; form tokens are all or none; file
names stay inside the model directory; max_len fits the decoder's position table."""
import json
from pathlib import Path

import pytest

from genrt.contract import FORM_TOKENS, ManifestError, PoemsManifest, read_manifest, write_manifest
from genrt.onnx_file import position_table_rows

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


def test_a_vocab_without_the_verse_marks_is_refused(tmp_path):
    write(tmp_path, [t for t in TINY_VOCAB if t != "，"])
    with pytest.raises(ManifestError, match="vocab lacks the verse marks ，"):
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
    from genrt.poems.verse.forms import FORMS
    assert set(FORM_TOKENS) == {f.aliases[0] for f in FORMS.values()}


# ---------------------------------------------------------------- file names stay inside the model directory

def faces_dir(tmp_path, **data):
    """A faces model directory (empty graph file: read_manifest only checks that it exists), manifest edited."""
    from genrt.contract import FacesManifest
    folder = tmp_path / "faces"
    folder.mkdir()
    path = write_manifest(folder, FacesManifest(nz=8, image_size=16))
    (folder / "generator.onnx").write_bytes(b"")
    edited = {**json.loads(path.read_text(encoding="utf-8")), **data}
    path.write_text(json.dumps(edited), encoding="utf-8")
    return folder


@pytest.mark.parametrize("name, problem", [
    ("/etc/passwd", "is an absolute path"),
    ("C:\\models\\generator.onnx", "is an absolute path"),
    ("../faces/generator.onnx", "contains '..'"),
    ("sub\\..\\..\\generator.onnx", "contains '..'"),
])
def test_a_graph_file_outside_the_model_directory_is_refused(tmp_path, name, problem):
    folder = faces_dir(tmp_path, graph_file=name)
    with pytest.raises(ManifestError, match=f"field 'graph_file' {problem}"):
        read_manifest(folder)


def test_the_absolute_path_of_the_real_graph_is_refused_too(tmp_path):
    folder = faces_dir(tmp_path)
    data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    data["graph_file"] = str((folder / "generator.onnx").resolve())  # exists, and is even inside
    (folder / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ManifestError, match="field 'graph_file' is an absolute path"):
        read_manifest(folder)


def test_a_symlink_out_of_the_model_directory_is_refused(tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    outside.write_bytes(b"")
    folder = faces_dir(tmp_path, graph_file="linked.onnx")
    (folder / "linked.onnx").symlink_to(outside)
    with pytest.raises(ManifestError, match="field 'graph_file' resolves outside the model directory"):
        read_manifest(folder)
    (folder / "linked.onnx").unlink()
    (folder / "linked.onnx").symlink_to(folder / "generator.onnx")  # a link that stays inside is fine
    assert read_manifest(folder).graph_file == "linked.onnx"


def test_every_file_name_of_the_manifest_is_checked(tmp_path):
    folder = faces_dir(tmp_path)
    data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    data["graphs"]["generator"]["file"] = "../../x.onnx"
    data["thumbnail_file"] = "/tmp/x.png"
    (folder / "manifest.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ManifestError) as err:
        read_manifest(folder)
    assert [p.split(" ")[1] for p in err.value.problems] == ["'thumbnail_file'", "'graphs.generator.file'"]


def test_the_discriminator_is_optional_and_checked_like_every_graph(tmp_path):
    from genrt.contract import REALNESS
    plain = read_manifest(faces_dir(tmp_path))
    assert plain.discriminator_file == "" and list(plain.graphs()) == ["generator"]
    assert plain.graph_files() == ("generator.onnx",)
    folder = tmp_path / "faces"
    (folder / "manifest.json").write_text(json.dumps({**json.loads((folder / "manifest.json").read_text()),
                                                      "discriminator_file": "discriminator.onnx"}))
    with pytest.raises(ManifestError, match="missing graph file discriminator.onnx"):
        read_manifest(folder)
    (folder / "discriminator.onnx").write_bytes(b"")
    shipped = read_manifest(folder)
    spec = shipped.graphs()["discriminator"]
    assert shipped.graph_files() == ("generator.onnx", "discriminator.onnx")
    assert spec.inputs[0].shape == ("batch", 16, 16, 3) and spec.inputs[0].dtype == "uint8"
    assert spec.outputs[0].name == REALNESS and spec.outputs[0].shape == ("batch",)
    for name, problem in (("../d.onnx", "contains '..'"), ("/d.onnx", "is an absolute path")):
        data = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps({**data, "discriminator_file": name}))
        with pytest.raises(ManifestError, match=f"field 'discriminator_file' {problem}"):
            read_manifest(folder)


@pytest.mark.parametrize("field", ["encoder_file", "decoder_file"])
def test_poem_graph_files_are_checked_by_name(tmp_path, field):
    path = write(tmp_path, TINY_VOCAB)
    data = json.loads(path.read_text(encoding="utf-8"))
    data[field] = "../" + data[field]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ManifestError, match=f"field '{field}' contains '..'"):
        read_manifest(tmp_path)


# ---------------------------------------------------------------- max_len against the decoder's position table

def tampered_poems_copy(tmp_path, source_dir, **data):
    import shutil
    folder = Path(shutil.copytree(source_dir, tmp_path / "poems"))
    path = folder / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **data}), encoding="utf-8")
    return folder


def test_max_len_beyond_the_position_table_is_refused_at_load(tmp_path, tiny_poems_dir):
    folder = tampered_poems_copy(tmp_path, tiny_poems_dir, max_len=89)
    with pytest.raises(ManifestError, match=r"max_len 89 exceeds the position table of decoder.onnx \(88 positions\)"):
        read_manifest(folder)
    from genrt.poems.generator import PoemGenerator
    with pytest.raises(ManifestError, match="max_len 89 exceeds"):
        PoemGenerator.load(folder, provider="cpu")
    (folder / "manifest.json").write_text(json.dumps({**json.loads((folder / "manifest.json").read_text(
        encoding="utf-8")), "max_len": 88}), encoding="utf-8")
    assert read_manifest(folder).max_len == 88                             # positions 0..87 all exist


@pytest.mark.parametrize("name", ["poems", "poems_int8"])
def test_bundled_poem_models_fit_their_position_tables(name):
    from genrt.runtime import bundled_model_dir
    folder = bundled_model_dir(name)
    if not folder.is_dir():
        pytest.skip(f"{name} is not bundled")
    assert position_table_rows(folder / "decoder.onnx") >= read_manifest(folder).max_len


def test_the_decoder_declares_log_norm_only_when_the_manifest_says_so():
    from dataclasses import replace

    from genrt.contract import LOG_NORM
    base = manifest(TINY_VOCAB)
    assert LOG_NORM not in [t.name for t in base.decoder().outputs]
    outputs = {t.name: t for t in replace(base, log_norm=True).decoder().outputs}
    assert outputs[LOG_NORM].shape == ("batch",) and outputs[LOG_NORM].dtype == "float32"


def test_the_decoder_returns_the_grown_cache_or_only_the_new_positions():
    from dataclasses import replace
    base = manifest(TINY_VOCAB)
    assert base.cache_outputs == "present"                                  # directories written before it
    grown = {t.name: t.shape for t in base.decoder().outputs}
    new = {t.name: t.shape for t in replace(base, cache_outputs="new").decoder().outputs}
    assert grown["present_key.1"] == ("batch", 4, "total_len", 8) and "new_key.1" not in grown
    assert new["new_value.1"] == ("batch", 4, "new_len", 8) and "present_value.1" not in new
    assert [t.name for t in replace(base, cache_outputs="new").decoder().inputs] == \
        [t.name for t in base.decoder().inputs]


def test_an_unknown_cache_output_kind_is_named(tmp_path):
    path = write(tmp_path, TINY_VOCAB)
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**data, "cache_outputs": "grown"}), encoding="utf-8")
    with pytest.raises(ManifestError, match=r"cache_outputs is 'grown', expected one of \['present', 'new'\]"):
        read_manifest(tmp_path)
