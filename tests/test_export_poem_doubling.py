"""export.poem_doubling: the doubling table counted on a corpus's training poems and named in a model directory."""
import json

import pytest

from export.poem_doubling import count_doubles, doubling_table, main, training_bodies, write_doubling
from genrt.contract import MANIFEST_NAME, ManifestError, PoemsManifest, SPECIAL_TOKENS, read_manifest, write_manifest
from genrt.poems.verse.doubling import DOUBLING_FILE, load_doubling
from trainers.poems_corpus import is_validation

BODIES = ["萧萧风雨夜，夜雨风萧萧。", "萧萧江上月，悠悠天地心。", "门掩掩风霜，谁为为君伤。",
          "春风悠悠吹柳枝，江水萧萧过石矶。"]


def test_count_doubles_per_character_and_place():
    totals, places, poems = count_doubles(BODIES)
    assert poems == 4 and totals == {"萧": 4, "悠": 2, "掩": 1, "为": 1}
    assert places["萧", 5, 0] == 2 and places["萧", 5, 3] == 1 and places["萧", 7, 2] == 1


def test_the_table_keeps_frequent_characters_and_their_frequent_places():
    table = doubling_table(BODIES, min_count=2, min_at_position=2)
    assert table.counts == {"萧": 4, "悠": 2} and table.training_poems == 4 and table.doubled_pairs == 8
    assert table.places["萧"] == {5: {0}, 7: set()} and table.places["悠"] == {5: set(), 7: set()}
    assert table.allowed("萧", 0, 5) and not table.allowed("萧", 3, 5) and not table.allowed("掩", 1, 5)
    assert doubling_table(BODIES, min_count=2, min_at_position=2, vocab=["悠"]).counts == {"悠": 2}


def ids(predicate, count):
    """The first `count` poem ids the corpus split puts in validation (predicate True) or training."""
    found, i = [], 0
    while len(found) < count:
        if predicate(is_validation(f"p{i}", 1.0)):
            found.append(f"p{i}")
        i += 1
    return found


@pytest.fixture
def corpus(tmp_path):
    """A chinese-poetry folder: two training poems doubling 萧, one validation poem doubling 琴."""
    train, val = ids(lambda v: not v, 2), ids(lambda v: v, 1)
    poems = [{"id": train[0], "title": "秋夜", "paragraphs": ["萧萧风雨夜，", "夜雨落寒林。"]},
             {"id": train[1], "title": "江上", "paragraphs": ["萧萧江上月，悠悠天地心。"]},
             {"id": val[0], "title": "独坐", "paragraphs": ["老子独琴琴，空山无一人。"]}]
    folder = tmp_path / "chinese-poetry"
    folder.mkdir()
    (folder / "poet.tang.0.json").write_text(json.dumps(poems, ensure_ascii=False), encoding="utf-8")
    return folder


def test_only_the_training_split_is_counted(corpus):
    bodies = training_bodies(corpus, val_percent=1.0, max_body=198)
    assert bodies == ["萧萧风雨夜，夜雨落寒林。", "萧萧江上月，悠悠天地心。"]
    assert "琴" not in doubling_table(bodies, min_count=1, min_at_position=1).counts


VOCAB = list(SPECIAL_TOKENS) + ["，", "。"] + list("萧风雨夜落寒林江上月悠天地心老子独琴空山无一人")


@pytest.fixture
def model_dir(tmp_path):
    """A poem model directory as the contract reads it (empty graph files: the graphs are never opened here)."""
    out = tmp_path / "poems"
    out.mkdir()
    manifest = PoemsManifest(vocab=tuple(VOCAB), d_model=8, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                             dim_feedforward=8, max_len=16, t2s_file="t2s.json",
                             training={"corpus": {"config": {"val_percent": 1.0, "max_body": 198}}})
    for name in (manifest.encoder_file, manifest.decoder_file):
        (out / name).write_bytes(b"")
    (out / "t2s.json").write_text("{}", encoding="utf-8")
    write_manifest(out, manifest)
    return out


def test_main_writes_the_table_and_names_it_keeping_the_rest_of_the_manifest(model_dir, corpus, capsys):
    data = json.loads((model_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    del data["doubling_file"]                                  # as written before the field existed
    data["written_by_a_newer_exporter"] = [1, 2]              # kept as is, though this genrt ignores it
    (model_dir / MANIFEST_NAME).write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    main([str(model_dir), "--data", str(corpus), "--min-count", "2", "--min-at-position", "2"])
    after = json.loads((model_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    keys = list(after)
    assert keys.index("doubling_file") == keys.index("t2s_file") + 1
    assert {k: v for k, v in after.items() if k != "doubling_file"} == data
    assert list(k for k in after if k != "doubling_file") == list(data)
    manifest = read_manifest(model_dir)
    table = load_doubling(model_dir, manifest)
    assert manifest.doubling_file == DOUBLING_FILE and DOUBLING_FILE in manifest.extra_files()
    assert table.counts == {"萧": 2} and table.places["萧"][5] == {0} and table.training_poems == 2
    assert DOUBLING_FILE in capsys.readouterr().out


def test_a_refresh_changes_only_the_table(model_dir):
    before = (model_dir / MANIFEST_NAME).read_text(encoding="utf-8")
    write_doubling(model_dir, doubling_table(BODIES, min_count=2))
    after = (model_dir / MANIFEST_NAME).read_text(encoding="utf-8")
    assert after == before.replace('"doubling_file": ""', f'"doubling_file": "{DOUBLING_FILE}"')
    write_doubling(model_dir, doubling_table(BODIES, min_count=1))
    assert (model_dir / MANIFEST_NAME).read_text(encoding="utf-8") == after
    assert load_doubling(model_dir, read_manifest(model_dir)).idiomatic("掩")


def test_the_contract_refuses_a_directory_missing_the_named_table(model_dir):
    write_doubling(model_dir, doubling_table(BODIES, min_count=2))
    (model_dir / DOUBLING_FILE).unlink()
    with pytest.raises(ManifestError, match=f"missing file {DOUBLING_FILE}"):
        read_manifest(model_dir)
