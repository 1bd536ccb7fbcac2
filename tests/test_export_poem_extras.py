"""export.poem_extras: the traditional -> simplified prompt table and the generation settings of a model directory."""
import json
import shutil

import pytest

from export.poem_extras import RECOMMENDED_GENERATION, T2S_FILE, main, t2s_table, with_extras
from genrt.contract import generation_problems, read_manifest


def test_t2s_keeps_single_characters_whose_simplified_form_alone_is_in_the_vocab(monkeypatch):
    # U+3400 is in CJK Extension A; U+F900 (a compatibility ideograph) is outside the ranges scanned
    table = {"萬": "万", "雲": "云", "乾": "干干", "\u3400": "万", "\uf900": "干"}
    monkeypatch.setattr("trainers.poems_corpus.make_converter", lambda: lambda s: table.get(s, s))
    assert t2s_table(["万", "雲", "干", "<pad>"]) == {"萬": "万", "\u3400": "万"}


def test_t2s_with_opencc_maps_traditional_prompts_onto_the_vocab():
    pytest.importorskip("opencc")
    table = t2s_table(["风", "钟", "鍾", "月", "<pad>"])
    assert table["風"] == "风" and table["鐘"] == "钟"
    assert "鍾" not in table and "月" not in table                        # in the vocab already / no other form
    assert set(table.values()) <= {"风", "钟"}


def test_the_recommended_settings_pass_the_contract():
    assert generation_problems(RECOMMENDED_GENERATION) == []


@pytest.fixture
def model_dir(tiny_poems_dir, tmp_path):
    pytest.importorskip("torch")                                          # the fixture trains and exports
    return shutil.copytree(tiny_poems_dir, tmp_path / "poems")


def test_bad_settings_are_refused_before_anything_is_written(model_dir):
    manifest = read_manifest(model_dir)
    (model_dir / T2S_FILE).unlink()
    with pytest.raises(ValueError, match="generation.beam has unknown setting 'beams'"):
        with_extras(model_dir, manifest, {"beam": {"beams": 4}})
    assert not (model_dir / T2S_FILE).exists()


def test_with_extras_names_the_table_and_carries_the_settings(model_dir):
    manifest = with_extras(model_dir, read_manifest(model_dir))
    assert manifest.t2s_file == T2S_FILE and manifest.generation == RECOMMENDED_GENERATION
    table = json.loads((model_dir / T2S_FILE).read_text(encoding="utf-8"))
    assert all(s in manifest.vocab and t not in manifest.vocab for t, s in table.items())


def test_main_refreshes_the_manifest_of_a_model_directory(model_dir, tmp_path, capsys):
    settings = {"default": {"max_char_repeats": 3}, "beam": {"length_penalty": 0.8}}
    (tmp_path / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    main([str(model_dir), "--generation", str(tmp_path / "settings.json")])
    manifest = read_manifest(model_dir)
    assert manifest.generation == settings and manifest.t2s_file == T2S_FILE
    assert (model_dir / T2S_FILE).is_file() and T2S_FILE in capsys.readouterr().out
