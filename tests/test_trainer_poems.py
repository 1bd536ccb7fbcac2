"""The poem trainer (trainers.poems): dry run, checkpoint contents, exact resume, vocab growth."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from genrt.contract import FORM_TOKENS  # noqa: E402
from trainers.common import load_checkpoint, save_checkpoint  # noqa: E402
from trainers.poems import PoemsConfig, load_model, train  # noqa: E402


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


def test_resume_names_every_setting_the_command_line_changes(tmp_path, capsys):
    train(tiny_cfg(tmp_path, steps=2))
    capsys.readouterr()
    train(tiny_cfg(tmp_path, steps=3, resume=True, dropout=0.0, threads=2))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("resuming with")]
    assert lines == ["resuming with dropout 0.1 -> 0.0", "resuming with steps 2 -> 3"]


def test_evaluate_metrics_are_consistent(tmp_path):
    ckpt = train(tiny_cfg(tmp_path))
    model, _, state = load_model(ckpt)
    m = state["history"][-1]
    assert m["ppl"] == pytest.approx(2.718281828 ** m["nll"], rel=1e-6)
    assert 0 <= m["js"] <= 0.6932 and m["kl"] >= 0


# ---------------------------------------------------------------- form tokens

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


def test_compact_checkpoint_keeps_the_run_record_and_bf16_weights_only(tmp_path):
    from trainers.poems import WEIGHTS_KIND, compact_checkpoint
    ckpt = train(tiny_cfg(tmp_path, steps=3))
    full = load_checkpoint(ckpt)
    compact = load_checkpoint(compact_checkpoint(ckpt, tmp_path / "w.pt"), expected_kind=WEIGHTS_KIND)
    assert "optimizer" not in compact and compact["step"] == 3 and compact["history"] == full["history"]
    assert compact["config"] == full["config"] and compact["vocab"] == full["vocab"]
    for name, value in full["model"].items():
        assert compact["model"][name].dtype == (torch.bfloat16 if value.is_floating_point() else value.dtype)
        torch.testing.assert_close(compact["model"][name], value.to(compact["model"][name].dtype), rtol=0, atol=0)
    assert load_model(tmp_path / "w.pt")[0].config == load_model(ckpt)[0].config


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
