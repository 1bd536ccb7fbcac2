"""Poem corpus cleaning and the poem trainer: dry run, checkpoint contents, exact resume."""
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from trainers.poems import PoemsConfig, evaluate, load_model, train  # noqa: E402
from trainers.poems_corpus import (  # noqa: E402
    CorpusConfig, CorpusStats, build_corpus, clean_body, clean_title, first_line, load_corpus, read_poems,
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


def tiny_cfg(tmp_path, **kw):
    base = dict(out=str(tmp_path / "run"), d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                dim_feedforward=32, threads=1, dry_run=True, steps=4)
    base.update(kw)
    return PoemsConfig(**base)


def test_dry_run_writes_a_self_describing_checkpoint(tmp_path):
    ckpt = train(tiny_cfg(tmp_path))
    state = torch.load(ckpt, weights_only=False)
    assert state["step"] == 4 and state["config"]["d_model"] == 16 and state["vocab"][0] == "<pad>"
    assert state["history"] and {"nll", "ppl", "kl", "js"} <= set(state["history"][-1])
    model, vocab, _ = load_model(ckpt)
    assert model.config.vocab_size == len(vocab)
    assert not list(Path(ckpt).parent.glob("*.tmp"))


def test_resume_continues_identically(tmp_path):
    straight = train(tiny_cfg(tmp_path / "a", steps=4, checkpoint_every=100))
    train(tiny_cfg(tmp_path / "b", steps=2))
    resumed = train(tiny_cfg(tmp_path / "b", steps=4, resume=True))
    a = torch.load(straight, weights_only=False)["model"]
    b = torch.load(resumed, weights_only=False)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_evaluate_metrics_are_consistent(tmp_path):
    ckpt = train(tiny_cfg(tmp_path))
    model, _, state = load_model(ckpt)
    m = state["history"][-1]
    assert m["ppl"] == pytest.approx(2.718281828 ** m["nll"], rel=1e-6)
    assert 0 <= m["js"] <= 0.6932 and m["kl"] >= 0
