"""Tiny random poem models, built and exported once per test session (registered in conftest.py)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from genrt.contract import FORM_TOKENS, SPECIAL_TOKENS

# Enough distinct Han characters for every form and rhyme group, plus line punctuation.
HAN = ("春江花月夜山水风云日星辰天地人家国秋冬夏雨雪霜寒暑朝暮东西南北中上下来去归行"
       "明光空长高远清深青白红黄金玉石松竹梅兰菊柳桃李草木鸟鱼龙马牛羊衣香酒茶诗书琴棋画")
PUNCT = "，。？！"
TINY_VOCAB = list(SPECIAL_TOKENS) + list(PUNCT) + list(HAN)
TINY_FORM_VOCAB = TINY_VOCAB + list(FORM_TOKENS.values())   # as trainers.poems_corpus appends them


def save_tiny_checkpoint(path: Path, seed: int = 0, vocab: list[str] = TINY_VOCAB, **overrides) -> Path:
    """A random PoemTransformer saved exactly as trainers.poems saves checkpoints."""
    import torch
    from trainers.common import save_checkpoint
    from trainers.poems import PoemsConfig
    from trainers.poems_model import PoemTransformer

    torch.manual_seed(seed)
    cfg = PoemsConfig(d_model=32, num_heads=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=64,
                      max_len=80, **overrides)
    model = PoemTransformer(cfg.model_config(len(vocab)))
    with torch.no_grad():  # sharper random logits so greedy and beam choices are not near-ties
        model.embed.weight.mul_(8.0)
    save_checkpoint(path, {"config": asdict(cfg), "vocab": vocab, "model": model.state_dict(), "step": 0,
                           "tokens_seen": 0, "history": [], "kind": "poems-transformer"})
    return path


@pytest.fixture(scope="session")
def tiny_poems_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("poems_ckpt") / "checkpoint.pt")


@pytest.fixture(scope="session")
def tiny_poems_dir(tiny_poems_checkpoint, tmp_path_factory) -> Path:
    """Exported encoder + decoder + manifest of the tiny model (export runs its own parity checks)."""
    import torch
    from export.poems import export_poems
    torch.set_num_threads(1)
    return export_poems(tiny_poems_checkpoint, tmp_path_factory.mktemp("poems_model"), check_prompts=20)


@pytest.fixture(scope="session")
def tiny_int8_dir(tiny_poems_dir, tmp_path_factory) -> Path:
    """The tiny model's int8 variant (per-row int8, the default scheme), as export.quantize writes it."""
    from export.quantize import quantize_poems
    return quantize_poems(tiny_poems_dir, tmp_path_factory.mktemp("poems_int8"))


@pytest.fixture(scope="session")
def tiny_poems_plain_dir(tiny_poems_checkpoint, tmp_path_factory) -> Path:
    """The same tiny model exported with standard ONNX attention ops (`--plain-attention`)."""
    import torch
    from export.poems import export_poems
    torch.set_num_threads(1)
    return export_poems(tiny_poems_checkpoint, tmp_path_factory.mktemp("poems_plain"), check_prompts=20,
                        fused_attention=False)


@pytest.fixture(scope="session")
def tiny_form_poems_dir(tmp_path_factory) -> Path:
    """A tiny exported model whose vocab ends with the form tokens."""
    import torch
    from export.poems import export_poems
    torch.set_num_threads(1)
    ckpt = save_tiny_checkpoint(tmp_path_factory.mktemp("form_ckpt") / "checkpoint.pt", seed=1, vocab=TINY_FORM_VOCAB)
    return export_poems(ckpt, tmp_path_factory.mktemp("form_model"), check_prompts=4)


@pytest.fixture(scope="session")
def tiny_calibrated_poems(tmp_path_factory):
    """A tiny model trained a little on the synthetic corpus, exported plain and with --calibrate on that corpus.
    -> (checkpoint, corpus cache, plain model dir, calibrated model dir)."""
    import torch
    from export.poems import export_poems
    from trainers.poems import PoemsConfig, synthetic_cache, train
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("calibrated")
    cache = synthetic_cache(folder / "data")
    checkpoint = train(PoemsConfig(out=str(folder / "run"), cache=str(cache), d_model=32, num_heads=2,
                                   num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=64, max_len=40,
                                   tokens_per_batch=256, steps=20, lr=3e-3, warmup=5, eval_every=20,
                                   eval_batches=1, checkpoint_every=20, threads=1, device="cpu"))
    plain = export_poems(checkpoint, folder / "plain", check_prompts=2)
    calibrated = export_poems(checkpoint, folder / "calibrated", check_prompts=2, calibrate_on=cache,
                              calibration_batches=2)
    return checkpoint, cache, plain, calibrated
