"""Poem corpus cleaning and the poem trainer: dry run, checkpoint contents, exact resume."""
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from genrt.contract import FORM_TOKENS  # noqa: E402
from trainers.common import load_checkpoint, save_checkpoint  # noqa: E402
from trainers.poems import PoemsConfig, evaluate, load_model, train  # noqa: E402
from trainers.poems_corpus import (  # noqa: E402
    CorpusConfig, CorpusStats, build_corpus, build_vocab, clean_body, clean_title, first_line, form_of, load_corpus,
    make_pairs, read_poems,
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
    state = load_checkpoint(ckpt, expected_kind="poems-transformer")
    assert state["step"] == 4 and state["config"]["d_model"] == 16 and state["vocab"][0] == "<pad>"
    assert state["history"] and {"nll", "ppl", "kl", "js"} <= set(state["history"][-1])
    model, vocab, _ = load_model(ckpt)
    assert model.config.vocab_size == len(vocab)
    assert not list(Path(ckpt).parent.glob("*.tmp"))


def test_resume_continues_identically(tmp_path):
    straight = train(tiny_cfg(tmp_path / "a", steps=4, checkpoint_every=100))
    train(tiny_cfg(tmp_path / "b", steps=2))
    resumed = train(tiny_cfg(tmp_path / "b", steps=4, resume=True))
    a = load_checkpoint(straight)["model"]
    b = load_checkpoint(resumed)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_evaluate_metrics_are_consistent(tmp_path):
    ckpt = train(tiny_cfg(tmp_path))
    model, _, state = load_model(ckpt)
    m = state["history"][-1]
    assert m["ppl"] == pytest.approx(2.718281828 ** m["nll"], rel=1e-6)
    assert 0 <= m["js"] <= 0.6932 and m["kl"] >= 0


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


def test_resume_grows_the_vocab_of_an_older_checkpoint(tmp_path):
    """A checkpoint trained without form tokens resumes on a corpus with them: old rows and moments kept."""
    old_ckpt = train(tiny_cfg(tmp_path, steps=2))
    state = load_checkpoint(old_ckpt)
    n_new = len(FORM_TOKENS)
    vocab = state["vocab"]
    assert vocab[-n_new:] == list(FORM_TOKENS.values())   # the dry-run corpus has them: strip them to fake an old run
    state["vocab"] = vocab[:-n_new]
    state["model"]["embed.weight"] = state["model"]["embed.weight"][:-n_new].clone()
    for moments in state["optimizer"]["state"].values():
        for name, m in moments.items():
            if torch.is_tensor(m) and m.shape[:1] == (len(vocab),):
                moments[name] = m[:-n_new].clone()
    save_checkpoint(old_ckpt, state)
    old_rows = state["model"]["embed.weight"]

    grown = load_checkpoint(train(tiny_cfg(tmp_path, steps=3, resume=True)))
    assert grown["vocab"] == vocab and grown["step"] == 3
    assert grown["model"]["embed.weight"].shape[0] == len(vocab)
    assert not torch.equal(grown["model"]["embed.weight"][:len(vocab) - n_new], old_rows)  # it trained on


def test_resume_on_an_unrelated_vocab_is_refused(tmp_path):
    ckpt = train(tiny_cfg(tmp_path, steps=2))
    state = load_checkpoint(ckpt)
    state["vocab"] = state["vocab"][:6] + ["X"] + state["vocab"][7:]
    save_checkpoint(ckpt, state)
    with pytest.raises(SystemExit, match="does not extend"):
        train(tiny_cfg(tmp_path, steps=3, resume=True))


@pytest.mark.parametrize("flag", ["--tokens-per-batch", "--steps", "--checkpoint-every", "--eval-every", "--warmup"])
def test_zero_sizes_stop_with_one_line(tmp_path, flag):
    from trainers.poems import main
    with pytest.raises(SystemExit, match=flag):
        main(["--dry-run", "--out", str(tmp_path / "run"), flag, "0"])
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_resume_with_nothing_to_resume_says_so(tmp_path):
    from trainers.poems import main
    with pytest.raises(SystemExit, match="no checkpoint"):
        main(["--dry-run", "--out", str(tmp_path / "run"), "--resume"])


def test_load_model_rebuilds_from_the_saved_model_config(tmp_path):
    """The network's own config travels with its weights; the training config is only a fallback."""
    from dataclasses import asdict
    from tests.fixtures_poems import save_tiny_checkpoint
    from trainers.common import load_checkpoint, save_checkpoint
    from trainers.poems import load_model
    path = save_tiny_checkpoint(tmp_path / "c.pt")
    model, _, _ = load_model(path)
    state = load_checkpoint(path)
    state["model_config"] = asdict(model.config)
    state["config"] = {**state["config"], "d_model": 999}        # a training config that no longer matches
    save_checkpoint(path, state)
    again, _, _ = load_model(path)
    assert again.config == model.config and again.config.architecture()["d_model"] == 32


def test_cooldown_scales_the_last_steps_linearly_to_zero():
    from trainers.poems import PoemsConfig, lr_at
    cfg, plain = PoemsConfig(lr=1e-3, warmup=10, steps=100, cooldown=20), PoemsConfig(lr=1e-3, warmup=10, steps=100)
    assert all(lr_at(cfg, s) == lr_at(plain, s) for s in (1, 10, 50, 80))
    assert lr_at(cfg, 91) == pytest.approx(lr_at(plain, 91) * 0.5)
    assert lr_at(cfg, 100) == pytest.approx(lr_at(plain, 100) / 20)
    assert lr_at(cfg, 90, restart=85) == pytest.approx(lr_at(plain, 90, restart=85) * 11 / 20)  # they multiply


def test_cooldown_longer_than_the_run_is_refused(tmp_path):
    from trainers.poems import main
    with pytest.raises(SystemExit, match="--cooldown"):
        main(["--dry-run", "--out", str(tmp_path / "run"), "--steps", "3", "--cooldown", "4"])


def test_warm_start_from_weights_goes_on_from_their_step_and_resumes_exactly(tmp_path):
    """--init-from: the weights-only copy's step and history carry over, the learning rate ramps up again from
    there (fresh AdamW moments), and a run stopped inside that ramp resumes to the same weights."""
    from trainers.poems import WEIGHTS_KIND, lr_at, save_weights, synthetic_cache
    model, vocab, state = load_model(train(tiny_cfg(tmp_path / "src", steps=4)))
    weights = tmp_path / "w.pt"
    save_weights(weights, model, vocab, state["config"], state["step"], state["tokens_seen"], state["history"])
    assert load_checkpoint(weights, expected_kind=WEIGHTS_KIND)["model"]["embed.weight"].dtype == torch.bfloat16
    cache = str(synthetic_cache(tmp_path / "corpus"))

    def run(folder, steps, **kw):
        return load_checkpoint(train(tiny_cfg(tmp_path / folder, dry_run=False, cache=cache, steps=steps,
                                              tokens_per_batch=256, eval_every=2, eval_batches=2,
                                              init_from=str(weights), **kw)))
    straight = run("a", 8, checkpoint_every=100)
    assert straight["step"] == 8 and straight["restart"] == 4
    assert straight["tokens_seen"] > state["tokens_seen"] and len(straight["history"]) > len(state["history"])
    cfg = tiny_cfg(tmp_path, steps=8, warmup=400)
    assert lr_at(cfg, 5, restart=4) == pytest.approx(lr_at(cfg, 5) / 400)         # ramped from the warm start
    assert run("b", 6, checkpoint_every=2)["step"] == 6
    resumed = run("b", 8, checkpoint_every=2, resume=True)
    assert resumed["restart"] == 4
    for name in straight["model"]:
        torch.testing.assert_close(straight["model"][name], resumed["model"][name], rtol=0, atol=0, msg=name)
