"""The decoder graph with onnxruntime's fused attention.

Each self- and cross-attention block of a decoder layer becomes one `com.microsoft.MultiHeadAttention` node instead
of ~20 reshapes, transposes, matmuls and a softmax. The node takes the past K/V of the contract as its `past_key` /
`past_value` inputs and returns the grown cache as `present_key` / `present_value`, both (B, H, T, Dh), and it reads
the cross-attention K/V (B, H, S, Dh) that the encoder computed, so the graph's inputs and outputs are exactly the
contract's. Fewer nodes means less fixed cost per decoder call, which is most of a one-token step on a small model.

The torch side of each node (`forward`) is the plain computation, so the module still runs in torch; the exported
graph is checked against the unfused training model like every export (logit parity, identical greedy/beam tokens).
Requires the model to be folded (`PoemTransformer.fold_for_inference`): one QKV projection, scale in the queries.
"""
from __future__ import annotations

import onnx
import torch
import torch.nn as nn

from trainers.poems_model import DecoderLayer, PoemTransformer, causal_mask, padding_mask

MHA_OP = "MultiHeadAttention"
MHA_DOMAIN = "com.microsoft"
# MultiHeadAttention's inputs: query, key, value, bias, key_padding_mask, attention_bias, past_key, past_value.
# Our nodes are emitted without the two unused ones; `insert_unused_inputs` puts empty names in their place.
_UNUSED_SLOTS = (3, 4)


def _heads(x: torch.Tensor, h: int) -> torch.Tensor:
    b, n, d = x.shape
    return x.view(b, n, h, d // h).transpose(1, 2)                 # (B, H, N, Dh)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
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
        k = torch.cat([past_k, _heads(k, num_heads)], dim=2)
        v = torch.cat([past_v, _heads(v, num_heads)], dim=2)
        return _attend(_heads(q, num_heads), k, v, bias), k, v

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
        return _attend(_heads(q, num_heads), k, v, bias)

    @staticmethod
    def symbolic(g, q, k, v, bias, num_heads: int, head_dim: int):
        y = g.op(f"{MHA_DOMAIN}::{MHA_OP}", q, k, v, bias, num_heads_i=num_heads, scale_f=1.0)
        _set_shape(y, k, [None, None, num_heads * head_dim])
        return y


def fused_layer(layer: DecoderLayer, x, past_k, past_v, self_bias, cross_k, cross_v, cross_bias):
    """The same function as DecoderLayer.forward (eval mode), with fused attention. x (B, N, D)."""
    sa, ca = layer.self_attn, layer.cross_attn
    q, k, v = sa.qkv(layer.ln1(x)).split(sa.h * sa.dh, dim=-1)                     # 3 x (B, N, D)
    y, k, v = SelfAttentionWithCache.apply(q, k, v, self_bias, past_k, past_v, sa.h, sa.dh)
    x = x + sa.out(y)
    x = x + ca.out(CrossAttention.apply(ca.q(layer.ln2(x)), cross_k, cross_v, cross_bias, ca.h, ca.dh))
    return x + layer.ff(layer.ln3(x)), k, v


class FusedDecoderGraph(nn.Module):
    """Same flat signature and outputs as export.poems.DecoderGraph: ids, positions, mask, past K/V..., cross K/V...
    -> logits (B, V), present K/V..."""

    def __init__(self, model: PoemTransformer):
        super().__init__()
        if any(layer.self_attn.qkv is None or layer.self_attn.scale != 1.0 for layer in model.decoder_layers):
            raise ValueError("fused attention needs a folded model: call fold_for_inference() first")
        self.model = model
        self.layers = model.config.num_decoder_layers

    def forward(self, input_ids, position_ids, src_mask, *kv):
        m, n = self.model, self.layers
        x = m.embed_tokens(input_ids, position_ids)                                     # (B, N, D)
        self_bias = causal_mask(position_ids, kv[0])                                    # (B, 1, N, T+N)
        cross_bias = padding_mask(src_mask).expand(-1, -1, input_ids.shape[1], -1)      # (B, 1, N, S)
        present = []
        for i, layer in enumerate(m.decoder_layers):
            x, k, v = fused_layer(layer, x, kv[2 * i], kv[2 * i + 1], self_bias,
                                  kv[2 * (n + i)], kv[2 * (n + i) + 1], cross_bias)
            present += [k, v]
        all_logits = torch.nn.functional.linear(m.dec_norm(x), m.embed.weight)          # (B, N, V)
        return (all_logits[:, -1], *present, all_logits)                                # logits (B, V) first


def insert_unused_inputs(model: onnx.ModelProto) -> int:
    """Give our MultiHeadAttention nodes their full input list (empty names for bias and key_padding_mask).
    Returns how many nodes were fused attention."""
    count = 0
    for node in model.graph.node:
        if node.op_type == MHA_OP and node.domain == MHA_DOMAIN:
            inputs = list(node.input)
            for slot in _UNUSED_SLOTS:
                inputs.insert(slot, "")
            del node.input[:]
            node.input.extend(inputs)
            count += 1
    return count
