"""trainers.poems_attention: the attention the fused MultiHeadAttention nodes stand for, computed in torch."""
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from trainers.poems_attention import (  # noqa: E402
    NEG_INF, PaddedAttention, SelfAttentionWithCache, attend, causal_bias, heads, padding_bias,
)

B, H, DH = 2, 3, 4


def test_heads_splits_the_model_dimension_into_consecutive_slices():
    x = torch.randn(B, 5, H * DH)
    split = heads(x, H)                                                      # (B, H, N, Dh)
    assert split.shape == (B, H, 5, DH)
    for i in range(H):
        assert torch.equal(split[:, i], x[..., i * DH:(i + 1) * DH])


def test_attend_is_scaled_dot_product_attention_with_an_additive_bias():
    torch.manual_seed(0)
    q, k, v = torch.randn(B, H, 2, DH), torch.randn(B, H, 6, DH), torch.randn(B, H, 6, DH)
    bias = torch.zeros(B, 1, 2, 6)
    bias[..., 4:] = -1e9                                                     # the last two keys are masked
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)   # (B, H, N, Dh)
    got = attend(q, k, v, bias)
    assert got.shape == (B, 2, H * DH)
    torch.testing.assert_close(got, want.transpose(1, 2).reshape(B, 2, H * DH))
    torch.testing.assert_close(attend(q, k[:, :, :4], v[:, :, :4], bias[..., :4]), got)


def test_self_attention_grows_the_cache_by_the_new_positions():
    torch.manual_seed(1)
    q, k, v = (torch.randn(B, 2, H * DH) for _ in range(3))                  # two new positions
    past_k, past_v = torch.randn(B, H, 3, DH), torch.randn(B, H, 3, DH)
    keep = torch.ones(B, 5, dtype=torch.int32)
    keep[0, 2] = 0                                   # a slot row 0 has not filled
    y, present_k, present_v = SelfAttentionWithCache.apply(q, k, v, keep, past_k, past_v, H, DH)
    assert present_k.shape == present_v.shape == (B, H, 5, DH)
    assert torch.equal(present_k[:, :, :3], past_k) and torch.equal(present_k[:, :, 3:], heads(k, H))
    assert torch.equal(present_v[:, :, 3:], heads(v, H))
    bias = torch.zeros(B, 1, 2, 5)
    bias[:, :, 0, 4] = NEG_INF                       # the first new position does not see the second
    bias[0, :, :, 2] = NEG_INF                       # nor does anything see an unfilled slot
    torch.testing.assert_close(y, attend(heads(q, H), present_k, present_v, bias))


def test_causal_bias_lets_each_new_position_see_the_cache_and_itself():
    bias = causal_bias(new=3, past=2, like=torch.zeros(1))
    assert bias.shape == (1, 1, 3, 5)
    assert (bias[0, 0] == 0).tolist() == [[True, True, True, False, False],
                                          [True, True, True, True, False],
                                          [True, True, True, True, True]]
    assert bias[0, 0, 0, 4].item() == NEG_INF


def test_cross_attention_reads_the_encoder_keys_and_values():
    torch.manual_seed(2)
    q, k, v = torch.randn(B, 1, H * DH), torch.randn(B, H, 7, DH), torch.randn(B, H, 7, DH)
    keep = torch.ones(B, 7, dtype=torch.int32)
    keep[1, 5:] = 0                                                          # the second source is 5 long
    y = PaddedAttention.apply(q, k, v, keep, H, DH)
    assert y.shape == (B, 1, H * DH)
    torch.testing.assert_close(y[1], attend(heads(q, H), k[:, :, :5], v[:, :, :5], 0.0)[1])
    torch.testing.assert_close(y, attend(heads(q, H), k, v, padding_bias(keep, torch.float32)))


def test_padding_bias_masks_the_padding_of_float_and_int_masks():
    for keep in (torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[1, 1, 0]], dtype=torch.int32)):
        bias = padding_bias(keep, torch.float32)
        assert bias.shape == (1, 1, 1, 3) and bias.dtype == torch.float32
        assert bias.flatten().tolist() == [0.0, 0.0, NEG_INF]


def test_padded_attention_splits_three_dimensional_keys_into_heads():
    """The encoder's self-attention passes its projections (B, S, D) as they are: the op splits them into heads."""
    torch.manual_seed(3)
    q, k, v = (torch.randn(B, 6, H * DH) for _ in range(3))
    keep = torch.ones(B, 6, dtype=torch.int32)
    keep[0, 4:] = 0
    y = PaddedAttention.apply(q, k, v, keep, H, DH)
    torch.testing.assert_close(y, PaddedAttention.apply(q, heads(k, H), heads(v, H), keep, H, DH))
