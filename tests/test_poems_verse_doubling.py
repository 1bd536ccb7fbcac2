"""genrt.poems.verse.doubling: the doubling table, its loading through the manifest, and the IdiomaticDoubling
processor."""
import json

import numpy as np
import pytest

from genrt.contract import SPECIAL_TOKENS, ManifestError, PoemsManifest
from genrt.poems.verse.doubling import (
    DOUBLING_FILE, DoublingTable, IdiomaticDoubling, doubled_pairs, load_doubling, verses,
)
from genrt.decoding.processors import NEG
from genrt.poems.tokenizer import CharTokenizer

VOCAB = list(SPECIAL_TOKENS) + ["，", "。", "萧", "悠", "掩", "风", "雨", "门", "年"]
TABLE_JSON = {"min_count": 20, "min_at_position": 3, "verse_lengths": [5, 7], "training_poems": 10,
              "doubled_pairs": 100,
              "chars": {"萧": {"count": 50, "5": [0, 3], "7": [0, 5]},
                        "悠": {"count": 30, "5": [], "7": [2]},
                        "年": {"count": 25}}}          # idiomatic, but no place kept: only where places are not kept


@pytest.fixture
def table():
    return DoublingTable.from_json(TABLE_JSON)


@pytest.fixture
def tok():
    return CharTokenizer(VOCAB)


def test_doubled_pairs_are_inside_one_verse():
    assert list(doubled_pairs("萧萧风雨夜，夜雨风萧萧。")) == [("萧", 5, 0), ("萧", 5, 3)]
    assert list(doubled_pairs("风萧萧萧，")) == [("萧", 4, 1), ("萧", 4, 2)]
    assert list(doubled_pairs("雨风，风雨")) == []                   # across the break: not a double
    assert list(doubled_pairs("，，。")) == []                       # punctuation never doubles


def test_the_table_allows_idiomatic_characters_at_their_places(table):
    assert table.idiomatic("萧") and not table.idiomatic("掩")
    assert table.allowed("萧", 0, 5) and table.allowed("萧", 3, 5) and not table.allowed("萧", 1, 5)
    assert table.allowed("萧", 5, 7) and not table.allowed("萧", 3, 7)
    assert table.allowed("萧", 5) and table.allowed("萧", 3) and not table.allowed("萧", 1)   # length unknown: either
    assert not table.allowed("悠", 2, 5) and table.allowed("悠", 2, 7)
    assert not table.allowed("掩", 0, 5) and not table.allowed("掩", 0, 4)
    assert table.allowed("年", 1, 4) and not table.allowed("年", 1, 5)   # no places for 4-character verses
    assert table.unidiomatic("门掩掩风霜，萧萧。") == ["掩掩"]


def test_misplaced_doubles_follow_the_first_verses_length(table):
    assert table.misplaced("风雨悠悠风，风雨风雨风。") == []                 # first verse: a 7-character place
    assert table.misplaced("风雨风雨风，风雨悠悠。") == ["悠悠"]             # a 5-character poem: not there
    assert table.misplaced("萧萧萧风雨，门掩掩风霜。") == ["萧萧", "掩掩"]    # a third in a row; never idiomatic
    assert verses("风雨，雨风。萧") == ["风雨", "雨风", "萧"]


def test_the_json_round_trips(table):
    assert DoublingTable.from_json(json.loads(json.dumps(table.to_json()))) == table


@pytest.mark.parametrize("bad, message", [
    ([], "must be a JSON object"),
    ({**TABLE_JSON, "min_count": 0}, "min_count must be a positive integer"),
    ({**TABLE_JSON, "verse_lengths": "57"}, "verse_lengths"),
    ({**TABLE_JSON, "verse_lengths": [5, 5]}, "distinct verse lengths"),
    ({**TABLE_JSON, "verse_lengths": [40, 30]}, "at most 62 pair starts"),
    ({**TABLE_JSON, "training_poems": "many"}, "training_poems must be a non-negative integer"),
    ({**TABLE_JSON, "chars": {"ab": {"count": 1}}}, "not one Han character"),
    ({**TABLE_JSON, "chars": {"萧": {"count": -1}}}, "non-negative integer count"),
    ({**TABLE_JSON, "chars": {"萧": {"count": 5, "5": [4]}}}, "place outside its verse length"),
])
def test_a_bad_table_is_refused_naming_the_problem(bad, message):
    with pytest.raises(ValueError, match=message):
        DoublingTable.from_json(bad)


def rows_of(tok, texts):
    ids = [[tok.sos_id] + tok.encode_text(t) for t in texts]
    assert len({len(r) for r in ids}) == 1
    return np.asarray(ids, np.int64)


def banned(processor, tok, texts):
    tokens = rows_of(tok, texts)
    logits = processor(tokens, np.zeros((len(texts), len(tok)), np.float32))
    return [[tok.vocab[i] for i in np.flatnonzero(row == NEG)] for row in logits]


@pytest.mark.parametrize("text, ban", [
    ("萧", []),                     # pair start 0 of the first verse: allowed for 5 and 7
    ("风萧", ["萧"]),                # start 1: nowhere
    ("风雨风萧", []),                # start 3: a 5-character place
    ("风雨风雨风萧", []),            # start 5: a 7-character place
    ("掩", ["掩"]),                 # never idiomatic
    ("风雨悠", []),                  # first verse: either length, 悠 doubles at 7-character start 2
    ("萧萧", ["萧"]),                # never a third in a row
    ("风雨，", []),                  # a break: nothing to repeat
])
def test_the_first_verse_allows_a_place_of_either_length(table, tok, text, ban):
    assert banned(IdiomaticDoubling(tok, table), tok, [text]) == [ban]


def test_later_verses_follow_the_first_verses_length(table, tok):
    processor = IdiomaticDoubling(tok, table)
    five, seven = "风雨风雨风，", "风雨风雨风雨风，"
    assert banned(processor, tok, [five + "风雨悠"]) == [["悠"]]          # 悠 doubles at start 2 of 7 only
    assert banned(processor, tok, [seven + "风雨悠"]) == [[]]
    assert banned(processor, tok, [five + "风雨风萧"]) == [[]]            # 萧 at start 3 of 5, not of 7
    assert banned(processor, tok, [seven + "风雨风萧"]) == [["萧"]]
    assert banned(processor, tok, ["风雨风，风雨风年"]) == [[]]        # 4 characters: idiomatic is enough


def test_it_bans_at_most_one_id_per_row_and_leaves_other_logits(table, tok):
    processor = IdiomaticDoubling(tok, table)
    assert processor.max_banned_ids == 1
    tokens = rows_of(tok, ["门掩", "风萧", "风，"])
    logits = np.random.default_rng(0).normal(size=(3, len(tok))).astype(np.float32)
    out = processor(tokens, logits.copy())
    assert (out == NEG).sum(axis=1).tolist() == [1, 1, 0]
    keep = out != NEG
    assert np.array_equal(out[keep], logits[keep])


def test_forced_text_counts_and_start_skips_the_prefix(table, tok):
    tokens = rows_of(tok, ["风雨风雨风，掩"])
    assert IdiomaticDoubling(tok, table)(tokens, np.zeros((1, len(tok)), np.float32))[0, tok.index["掩"]] == NEG
    empty = np.asarray([[tok.sos_id]], np.int64)
    assert not (IdiomaticDoubling(tok, table)(empty, np.zeros((1, len(tok)), np.float32)) == NEG).any()


def test_the_processor_agrees_with_the_table_on_random_rows(table, tok):
    """The vectorised processor against the rule read off the table, one row at a time."""
    rng = np.random.default_rng(1)
    han = [c for c in VOCAB if c not in SPECIAL_TOKENS and c not in "，。"]
    alphabet = han + ["，"] * 2
    processor = IdiomaticDoubling(tok, table)
    for length in range(1, 20):
        texts = ["".join(rng.choice(alphabet, length)) for _ in range(40)]
        got = banned(processor, tok, texts)
        for text, ban in zip(texts, got):
            *before, current = text.split("，")
            first = len(before[0]) if before else None
            expect = []
            if current:
                ch, start = current[-1], len(current) - 1
                tripled = start >= 1 and current[-2] == ch
                if tripled or not table.allowed(ch, start, first):
                    expect = [ch]
            assert ban == expect, text
            if current:                        # the table's own reading of the finished text agrees
                added = len(table.misplaced(text + current[-1])) - len(table.misplaced(text))
                assert added == len(expect), text


def manifest_naming(file: str) -> PoemsManifest:
    return PoemsManifest(vocab=tuple(VOCAB), d_model=8, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                         dim_feedforward=8, max_len=16, doubling_file=file)


def test_load_doubling_reads_the_file_the_manifest_names(tmp_path, table):
    assert load_doubling(tmp_path, manifest_naming("")) is None
    (tmp_path / DOUBLING_FILE).write_text(json.dumps(TABLE_JSON, ensure_ascii=False), encoding="utf-8")
    assert load_doubling(tmp_path, manifest_naming(DOUBLING_FILE)) == table


@pytest.mark.parametrize("content, name, message", [
    ("{", DOUBLING_FILE, "doubling.json is not valid JSON"),
    ("[" * 100_000, DOUBLING_FILE, "nested too deeply"),
    (json.dumps({**TABLE_JSON, "min_at_position": "3"}), DOUBLING_FILE, "min_at_position"),
    ("{}", "../doubling.json", "doubling_file contains '..'"),
])
def test_load_doubling_refuses_a_bad_or_escaping_file(tmp_path, content, name, message):
    (tmp_path / DOUBLING_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(ManifestError, match=message):
        load_doubling(tmp_path, manifest_naming(name))


def test_the_bundled_poem_models_carry_a_table():
    from genrt.contract import read_manifest
    from genrt.runtime import bundled_model_dir
    for name in ("poems", "poems_int8"):
        model_dir = bundled_model_dir(name)
        table = load_doubling(model_dir, read_manifest(model_dir))
        assert table is not None and table.min_count == 20
        assert table.allowed("萧", 0, 5) and table.allowed("悠", 3, 5)
        assert not any(table.idiomatic(ch) for ch in "掩衫琴枕")       # 门掩掩, 青衫衫, 独琴琴, 枕枕
        assert (model_dir / DOUBLING_FILE).stat().st_size < 64_000
