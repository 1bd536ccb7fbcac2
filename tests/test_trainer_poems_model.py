"""trainers.poems_model: the poem Transformer's masks, config, cached decoding and export-time rewrites."""
import copy
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from trainers.poems_model import (  # noqa: E402
    ARCHITECTURE, NEG_INF, PoemTransformer, PoemTransformerConfig, causal_mask, padding_mask,
)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return PoemTransformer(PoemTransformerConfig(vocab_size=40, d_model=32, num_heads=4, num_encoder_layers=1,
                                                 num_decoder_layers=2, dim_feedforward=64, max_len=40)).eval()


def test_refuses_an_unfolded_model():
    with pytest.raises(ValueError, match="fold_for_inference"):
        tiny_model().use_fused_attention()


def test_padding_mask_hides_the_padded_source_positions():
    mask = padding_mask(torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert mask.shape == (2, 1, 1, 3)
    assert mask[:, 0, 0].tolist() == [[0.0, 0.0, NEG_INF], [0.0, NEG_INF, NEG_INF]]


def test_causal_mask_lets_each_new_position_see_the_cache_and_itself():
    past_k = torch.zeros(1, 4, 2, 8)                                          # two cached positions
    mask = causal_mask(torch.tensor([[2, 3]]), past_k)                       # (1, 1, 2, 4)
    assert mask.shape == (1, 1, 2, 4)
    assert (mask[0, 0] == 0).tolist() == [[True, True, True, False], [True, True, True, True]]
    first = causal_mask(torch.tensor([[0, 1, 2]]), torch.zeros(1, 4, 0, 8))[0, 0]
    assert (first == 0).tolist() == [[True, False, False], [True, True, False], [True, True, True]]


def test_config_is_rebuilt_from_any_object_with_the_architecture_fields():
    settings = SimpleNamespace(d_model=64, num_heads=2, num_encoder_layers=3, num_decoder_layers=1,
                               dim_feedforward=128, max_len=90, lr=1e-3)
    config = PoemTransformerConfig.of(50, settings, dropout=0.0)
    assert config.vocab_size == 50 and config.dropout == 0.0 and config.pad_id == 0
    assert config.architecture() == {name: getattr(settings, name) for name in ARCHITECTURE}


def src_batch():
    src = torch.tensor([[4, 10, 11, 12], [5, 13, 14, 0]])
    return src, (src != 0).float()


def test_decoding_step_by_step_with_the_cache_equals_teacher_forcing():
    model = tiny_model()
    src, mask = src_batch()
    tgt = torch.tensor([[1, 20, 21, 22, 23], [1, 30, 31, 32, 33]])
    with torch.no_grad():
        want = model(src, mask, tgt)                                          # (B, N, V)
        cross, past = model.encode(src, mask), model.empty_cache(2)
        for i in range(tgt.shape[1]):
            logits, past = model.decode(tgt[:, i:i + 1], torch.full((2, 1), i), mask, past, cross)
            torch.testing.assert_close(logits, want[:, i], atol=1e-5, rtol=1e-5)
    assert len(past) == 2 and past[0][0].shape == (2, 4, tgt.shape[1], 8)   # per layer (B, H, T, Dh)


def test_padding_the_source_does_not_change_the_logits():
    model = tiny_model()
    tgt = torch.tensor([[1, 20, 21]])
    short, padded = torch.tensor([[5, 13, 14]]), torch.tensor([[5, 13, 14, 0, 0]])
    with torch.no_grad():
        a = model(short, torch.ones(1, 3), tgt)
        b = model(padded, (padded != 0).float(), tgt)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_folding_for_inference_keeps_the_function():
    model = tiny_model()
    folded = copy.deepcopy(model).fold_for_inference()
    attn = folded.decoder_layers[0].self_attn
    assert attn.scale == 1.0 and attn.qkv is not None and not folded.training
    src, mask = src_batch()
    tgt = torch.tensor([[1, 20, 21], [1, 30, 31]])
    with torch.no_grad():
        torch.testing.assert_close(folded(src, mask, tgt), model(src, mask, tgt), atol=1e-5, rtol=1e-5)


def test_the_output_layer_shares_the_embedding_table():
    model = tiny_model()
    assert not any(name.startswith(("out", "lm_head")) for name, _ in model.named_parameters())
    src, mask = src_batch()
    with torch.no_grad():
        cross = model.encode(src, mask)
        logits, _ = model.decode(torch.ones(2, 1, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long), mask,
                                 model.empty_cache(2), cross)
        model.embed.weight[7].zero_()
        again, _ = model.decode(torch.ones(2, 1, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long), mask,
                                model.empty_cache(2), model.encode(src, mask))
    assert logits.shape == (2, 40) and (again[:, 7] == 0).all() and not (logits[:, 7] == 0).all()


def test_training_on_cpu_differentiates_attention_through_the_math_kernel():
    """The flash kernel's CPU backward is the slow one for poem-length sequences: training must not dispatch to it,
    and the loss is the one the eval-mode attention computes."""
    from torch.profiler import ProfilerActivity, profile
    model = tiny_model()
    src = torch.randint(6, 40, (2, 5))
    tgt = torch.randint(6, 40, (2, 7))
    with torch.no_grad():
        want = model(src, torch.ones(2, 5), tgt)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    for m in model.modules():
        if hasattr(m, "dropout") and isinstance(m.dropout, float):
            m.dropout = 0.0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        got = model(src, torch.ones(2, 5), tgt)
        got.sum().backward()
    ops = {e.key for e in prof.key_averages()}
    assert not [op for op in ops if "flash" in op]
    assert any("scaled_dot_product_attention" in op for op in ops)
    torch.testing.assert_close(got.detach(), want, atol=1e-5, rtol=1e-5)
