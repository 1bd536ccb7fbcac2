"""trainers.poems_corpus: cleaning chinese-poetry entries, the vocab, form tokens, training pairs and the cache."""
import json
from pathlib import Path

import numpy as np
import pytest

from genrt.contract import FORM_TOKENS, PROMPT_FIRST_LINE, PROMPT_TITLE
from trainers.poems_corpus import (
    CorpusConfig, CorpusStats, build_corpus, build_vocab, clean_body, clean_title, first_line, form_of, is_validation,
    load_corpus, make_pairs, pack, read_poems, tokenizer_of, unpack,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinese-poetry"


@pytest.mark.parametrize("paragraphs, expected", [
    (["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"], "床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。"),
    (["春眠不覺曉（一作春眠），處處聞啼鳥。"], "春眠不覺曉，處處聞啼鳥。"),
    (["白日依山盡{注}，黃河入海流。", ""], "白日依山盡，黃河入海流。"),
])
def test_clean_body_keeps_text_and_strips_notes(paragraphs, expected):
    assert clean_body(paragraphs) == (expected, "")


@pytest.mark.parametrize("paragraphs, reason", [
    (["無正文。"], "no text"),
    (["春□不覺曉，處處聞啼鳥。"], "missing characters"),
    ([], "empty"),
    (["春眠abc曉，處處聞啼鳥。"], "unexpected characters"),
    (["春眠。"], "too short"),
    (["春眠不覺曉，處處聞啼鳥"], "unterminated"),
    ("not a list", "malformed"),
])
def test_clean_body_drops_broken_entries(paragraphs, reason):
    body, why = clean_body(paragraphs)
    assert body is None and reason in why


def test_title_and_first_line():
    assert clean_title("靜夜思（其一）") == "靜夜思"
    assert clean_title("帝京篇十首 一") == "帝京篇十首一"
    assert first_line("床前明月光，疑是地上霜。") == "床前明月光"


def write_poems(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    poems = [
        {"title": "靜夜思", "id": "a", "paragraphs": ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]},
        {"title": "無題", "id": "b", "paragraphs": ["無正文。"]},
        {"title": "殘", "id": "c", "paragraphs": ["春□不覺曉，處處聞啼鳥。"]},
        {"title": "春曉", "id": "d", "paragraphs": ["春眠不覺曉，處處聞啼鳥。", "夜來風雨聲，花落知多少。"]},
    ]
    (folder / "poet.tang.0.json").write_text(json.dumps(poems, ensure_ascii=False), encoding="utf-8")
    return folder


def test_corpus_counts_drops_converts_and_caches(tmp_path):
    pytest.importorskip("opencc")                                          # the train extra simplifies the titles
    data = write_poems(tmp_path / "data")
    stats = CorpusStats()
    kept = list(read_poems(data, stats))
    assert [p["title"] for p in kept] == ["静夜思", "春晓"]                  # simplified by opencc
    assert kept[0]["body"].startswith("床前明月光，疑是地上霜。举头")
    assert stats.kept == 2 and dict(stats.dropped) == {"no text (無正文)": 1, "missing characters (□)": 1}
    cache = build_corpus(CorpusConfig(data=str(data), cache=str(tmp_path / "cache"), min_freq=1, val_percent=0))
    arrays, vocab, summary = load_corpus(cache)
    assert vocab[:6] == ["<pad>", "<sos>", "<eos>", "<unk>", "<title>", "<first>"]
    assert summary["dropped_total"] == 2 and summary["train_poems"] == 2
    assert arrays["train_tgt"].dtype.name == "uint16"


def test_validation_split_is_deterministic(tmp_path):
    data = write_poems(tmp_path / "data")
    a = build_corpus(CorpusConfig(data=str(data), cache=str(tmp_path / "a"), min_freq=1, val_percent=50))
    b = build_corpus(CorpusConfig(data=str(data), cache=str(tmp_path / "b"), min_freq=1, val_percent=50))
    assert json.loads((a / "stats.json").read_text())["val_poems"] == json.loads((b / "stats.json").read_text())["val_poems"]


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared poetry data not present")
def test_reads_a_real_file():
    stats = CorpusStats()
    poems = list(read_poems(SHARED, stats, max_files=1))
    assert stats.poems_read == 1000 and len(poems) > 900


# ---------------------------------------------------------------- form tokens

QIJUE = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"
WUJUE = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"


def test_form_of_names_regular_forms_only():
    assert form_of(QIJUE) == "qijue" and form_of(WUJUE) == "wujue"
    assert form_of(WUJUE + WUJUE) == "wulv"
    assert form_of("床前明月光，疑是地上霜。") is None and form_of("床前明月光，疑是地上霜？举头望明月，低头思故乡。") is None


def test_form_tokens_are_appended_after_the_characters():
    poems = [{"title": "早发白帝城", "body": QIJUE, "id": "1"}]
    plain, tagged = build_vocab(poems, 1), build_vocab(poems, 1, form_tokens=True)
    assert tagged[:len(plain)] == plain and tagged[len(plain):] == list(FORM_TOKENS.values())


def test_a_share_of_regular_form_pairs_carry_their_form_token():
    poems = [{"title": f"题{i}", "body": QIJUE if i % 2 else "床前明月光，疑是地上霜。", "id": str(i)}
             for i in range(400)]
    vocab = build_vocab(poems, 1, form_tokens=True)
    index = {t: i for i, t in enumerate(vocab)}
    sources, targets = make_pairs(poems, index, continue_share=0.0, seed=0, form_share=0.5)
    untagged, _ = make_pairs(poems, index, continue_share=0.0, seed=0, form_share=0.0)
    qijue = index["<qijue>"]
    tagged = [s for s in sources if qijue in s]
    assert 70 < len(tagged) < 130                       # about half of the 200 qijue pairs
    assert all(s[1] == qijue for s in tagged)           # right after the prompt-kind token
    assert not any(index[t] in s for s in sources[::2] for t in FORM_TOKENS.values())  # irregular poems: never
    assert [[t for t in s if t != qijue] for s in sources] == untagged  # same pairs otherwise


# ---------------------------------------------------------------- pairs, packing and the split

def test_ascii_punctuation_is_converted_and_notes_are_counted():
    stats = CorpusStats()
    assert clean_body(["春眠不覺曉,處處聞啼鳥."], stats) == ("春眠不覺曉，處處聞啼鳥。", "")
    assert stats.notes_removed == 0
    assert clean_body(["春眠不覺曉（注），處處聞　啼鳥。"], stats) == ("春眠不覺曉，處處聞啼鳥。", "")
    assert stats.notes_removed == 1


def test_first_line_of_a_body_without_punctuation_is_the_body():
    assert first_line("春眠不觉晓") == "春眠不觉晓"
    assert first_line("春眠不觉晓？处处闻啼鸟。") == "春眠不觉晓"


def test_vocab_orders_characters_by_falling_frequency_then_by_character():
    poems = [{"title": "乙", "body": "甲乙，丙乙。"}, {"title": "", "body": "丙丁。"}]
    vocab = build_vocab(poems, min_freq=1)
    assert vocab[6:] == ["乙", "。", "丙", "丁", "甲", "，"]              # 乙 3; 。丙 2; then 1, ties by code point
    assert build_vocab(poems, min_freq=2)[6:] == ["乙", "。", "丙"]


def test_pairs_are_title_pairs_plus_continue_pairs_for_untitled_poems():
    poems = [{"title": "春晓", "body": "春眠不觉晓，处处闻啼鸟。"}, {"title": "", "body": "夜来风雨声，花落知多少。"}]
    vocab = build_vocab(poems, 1)
    index = {t: i for i, t in enumerate(vocab)}
    tok = tokenizer_of(index)
    assert tok.vocab == tuple(vocab)
    sources, targets = make_pairs(poems, index, continue_share=0.0, seed=0)
    assert sources == [tok.prompt_ids(PROMPT_TITLE, "春晓"), tok.prompt_ids(PROMPT_FIRST_LINE, "夜来风雨声")]
    assert targets == [tok.encode_text(p["body"]) for p in poems]
    sources, targets = make_pairs(poems, index, continue_share=1.0, seed=0)   # every titled poem continues too
    assert sources[1] == tok.prompt_ids(PROMPT_FIRST_LINE, "春眠不觉晓") and len(targets) == 3


def test_pack_and_unpack_round_trip():
    seqs = [[5, 6, 7], [], [65535], [8]]
    flat, offsets = pack(seqs)
    assert flat.dtype == np.uint16 and offsets.tolist() == [0, 3, 3, 4, 5]
    assert [unpack(flat, offsets, i).tolist() for i in range(len(seqs))] == seqs


def test_validation_split_follows_the_id_hash():
    ids = [f"poem-{i}" for i in range(4000)]
    chosen = [i for i in ids if is_validation(i, 10.0)]
    assert chosen == [i for i in ids if is_validation(i, 10.0)]                   # the same every run
    assert 300 < len(chosen) < 500                                                  # about 10 %
    assert not any(is_validation(i, 0.0) for i in ids) and all(is_validation(i, 100.0) for i in ids)


def test_read_poems_takes_files_in_numeric_order_and_drops_long_bodies(tmp_path):
    body = ["春眠不覺曉，處處聞啼鳥。"]
    for name, title in (("poet.song.10.json", "十"), ("poet.song.2.json", "二"), ("poet.tang.0.json", "零")):
        (tmp_path / name).write_text(json.dumps([{"title": title, "paragraphs": body}], ensure_ascii=False),
                                     encoding="utf-8")
    (tmp_path / "authors.json").write_text("[]", encoding="utf-8")                # not a poet.*.json file
    stats = CorpusStats()
    assert [p["title"] for p in read_poems(tmp_path, stats)] == ["二", "十", "零"]
    assert [p["id"] for p in read_poems(tmp_path, CorpusStats(), max_files=1)] == ["poet.song.2.json:1"]
    short = CorpusStats()
    assert list(read_poems(tmp_path, short, max_body=11)) == []
    assert dict(short.dropped) == {"longer than 11 characters": 3} and short.kept == 0
