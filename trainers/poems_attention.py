"""onnxruntime's fused attention for the poem model: torch autograd Functions that compute the plain attention
in torch and export as one `com.microsoft.MultiHeadAttention` node each (instead of ~20 reshapes, transposes,
matmuls and a softmax). The node takes the contract's past K/V as `past_key` / `past_value` and returns the grown
cache, both (B, H, T, Dh); cross-attention reads the encoder's K/V (B, H, S, Dh), and the encoder's self-attention
is the same padded attention over its own projections. `Attention(fused=True)` in trainers.poems_model uses them;
export.poems chooses the form (`--plain-attention` keeps standard ONNX ops).

The masks live inside the nodes rather than as graph-built additive biases (which cost ~50 small nodes per decoder
call): the decoder's self-attention is `unidirectional` (query i of the N new positions sees the T cached slots and
new keys up to itself) and takes the (B, T+N) int32 keep-mask of the slots each row has filled as
`key_padding_mask`; attention over the source takes its (B, S) int32 keep-mask as `key_padding_mask` too (0 = padding, scored `mask_filter_value` = -10000 by onnxruntime: exp underflows to
0 in fp32 exactly as with the training model's -1e9).
"""
from __future__ import annotations

import torch

MHA_OP = "MultiHeadAttention"
MHA_DOMAIN = "com.microsoft"
NEG_INF = -1e9   # the additive mask value; finite so a fully masked row stays NaN-free


def heads(x: torch.Tensor, h: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, h, d // h).transpose(1, 2)                 # (B, H, N, Dh)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """q (B, H, N, Dh) pre-scaled, k/v (B, H, T, Dh), bias additive, broadcastable to (B, H, N, T) -> (B, N, H*Dh)."""
    y = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1) @ v   # (B, H, N, Dh)
    b, h, n, dh = y.shape
    return y.transpose(1, 2).reshape(b, n, h * dh)


def causal_bias(new: int, past: int, like: torch.Tensor) -> torch.Tensor:
    """What `unidirectional` means with a cache: new position i (of `new`, after `past` cached ones) sees keys
    0..past+i. -> (1, 1, new, past+new) additive."""
    keys = torch.arange(past + new, device=like.device)
    visible = keys[None, :] <= (past + torch.arange(new, device=like.device))[:, None]
    return torch.where(visible, 0.0, NEG_INF).to(like.dtype)[None, None]


def padding_bias(key_keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """key_keep (B, S), 1 = token (float or int) -> (B, 1, 1, S) additive, of `dtype`."""
    return ((1.0 - key_keep.to(dtype)) * NEG_INF)[:, None, None, :]


def _set_shape(value, like, sizes: list) -> None:
    """Give a contrib op's output the dtype of `like` and these sizes (None = dynamic): onnx cannot infer them."""
    value.setType(like.type().with_sizes(sizes))


class SelfAttentionWithCache(torch.autograd.Function):
    """q, k, v (B, N, D) for the new positions; past K/V (B, H, T, Dh); key_keep (B, T+N) int32, 1 = a key to
    attend (a row's unfilled cache slots are 0); causal among the new positions
    -> y (B, N, D), present K/V (B, H, T+N, Dh)."""

    @staticmethod
    def forward(ctx, q, k, v, key_keep, past_k, past_v, num_heads: int, head_dim: int):
        bias = causal_bias(q.shape[1], past_k.shape[2], q) + padding_bias(key_keep, q.dtype)
        k = torch.cat([past_k, heads(k, num_heads)], dim=2)
        v = torch.cat([past_v, heads(v, num_heads)], dim=2)
        return attend(heads(q, num_heads), k, v, bias), k, v

    @staticmethod
    def symbolic(g, q, k, v, key_keep, past_k, past_v, num_heads: int, head_dim: int):
        y, k, v = g.op(f"{MHA_DOMAIN}::{MHA_OP}", q, k, v, key_keep, past_k, past_v, num_heads_i=num_heads,
                       scale_f=1.0, unidirectional_i=1, outputs=3)
        _set_shape(y, past_k, [None, None, num_heads * head_dim])
        _set_shape(k, past_k, [None, num_heads, None, head_dim])
        _set_shape(v, past_k, [None, num_heads, None, head_dim])
        return y, k, v


class PaddedAttention(torch.autograd.Function):
    """Attention over a padded source: q (B, N, D); k, v either (B, H, S, Dh) (the decoder's cross-attention, K/V
    from the encoder) or (B, S, D) (the encoder's self-attention, split into heads by the op); key_keep (B, S)
    int32, 1 = token -> y (B, N, D)."""

    @staticmethod
    def forward(ctx, q, k, v, key_keep, num_heads: int, head_dim: int):
        if k.dim() == 3:
            k, v = heads(k, num_heads), heads(v, num_heads)
        return attend(heads(q, num_heads), k, v, padding_bias(key_keep, q.dtype))

    @staticmethod
    def symbolic(g, q, k, v, key_keep, num_heads: int, head_dim: int):
        y = g.op(f"{MHA_DOMAIN}::{MHA_OP}", q, k, v, key_keep, num_heads_i=num_heads, scale_f=1.0)
        _set_shape(y, k, [None, None, num_heads * head_dim])
        return y
