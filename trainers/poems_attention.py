"""onnxruntime's fused attention for the poem decoder: torch autograd Functions that compute the plain attention
in torch and export as one `com.microsoft.MultiHeadAttention` node each (instead of ~20 reshapes, transposes,
matmuls and a softmax). The node takes the contract's past K/V as `past_key` / `past_value` and returns the grown
cache, both (B, H, T, Dh); cross-attention reads the encoder's K/V (B, H, S, Dh). `Attention(fused=True)` in
trainers.poems_model uses them; export.poems chooses the form (`--plain-attention` keeps standard ONNX ops).
"""
from __future__ import annotations

import torch

MHA_OP = "MultiHeadAttention"
MHA_DOMAIN = "com.microsoft"


def heads(x: torch.Tensor, h: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, h, d // h).transpose(1, 2)                 # (B, H, N, Dh)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """q (B, H, N, Dh) pre-scaled, k/v (B, H, T, Dh), bias (B, 1, N, T) additive -> (B, N, H*Dh)."""
    y = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1) @ v   # (B, H, N, Dh)
    b, h, n, dh = y.shape
    return y.transpose(1, 2).reshape(b, n, h * dh)


def _set_shape(value, like, sizes: list) -> None:
    """Give a contrib op's output the dtype of `like` and these sizes (None = dynamic): onnx cannot infer them."""
    value.setType(like.type().with_sizes(sizes))


class SelfAttentionWithCache(torch.autograd.Function):
    """q, k, v (B, N, D) for the new positions; bias (B, 1, N, T+N); past K/V (B, H, T, Dh)
    -> y (B, N, D), present K/V (B, H, T+N, Dh)."""

    @staticmethod
    def forward(ctx, q, k, v, bias, past_k, past_v, num_heads: int, head_dim: int):
        k = torch.cat([past_k, heads(k, num_heads)], dim=2)
        v = torch.cat([past_v, heads(v, num_heads)], dim=2)
        return attend(heads(q, num_heads), k, v, bias), k, v

    @staticmethod
    def symbolic(g, q, k, v, bias, past_k, past_v, num_heads: int, head_dim: int):
        y, k, v = g.op(f"{MHA_DOMAIN}::{MHA_OP}", q, k, v, bias, past_k, past_v, num_heads_i=num_heads,
                       scale_f=1.0, outputs=3)
        _set_shape(y, past_k, [None, None, num_heads * head_dim])
        _set_shape(k, past_k, [None, num_heads, None, head_dim])
        _set_shape(v, past_k, [None, num_heads, None, head_dim])
        return y, k, v


class CrossAttention(torch.autograd.Function):
    """q (B, N, D); k, v (B, H, S, Dh) from the encoder; bias (B, 1, N, S) -> y (B, N, D)."""

    @staticmethod
    def forward(ctx, q, k, v, bias, num_heads: int, head_dim: int):
        return attend(heads(q, num_heads), k, v, bias)

    @staticmethod
    def symbolic(g, q, k, v, bias, num_heads: int, head_dim: int):
        y = g.op(f"{MHA_DOMAIN}::{MHA_OP}", q, k, v, bias, num_heads_i=num_heads, scale_f=1.0)
        _set_shape(y, k, [None, None, num_heads * head_dim])
        return y
