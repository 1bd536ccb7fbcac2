"""Encoder-decoder Transformer for poems, with attention written out so K/V are explicit tensors.

The same modules serve training (whole sequences, causal mask) and export: the encoder returns the
cross-attention K/V of every decoder layer, and the decoder takes new tokens plus a self-attention cache and
returns the grown cache. Pre-LayerNorm blocks; one embedding table shared by encoder, decoder and output layer.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from trainers.poems_attention import NEG_INF, PaddedAttention, SelfAttentionWithCache, padding_bias

# Training on CPU: scaled_dot_product_attention's flash kernel is slow to differentiate for poem-length sequences
# (its backward took 4x its forward); the math kernel (matmuls and a softmax, in fp32 under bf16 autocast) computes
# the same loss in a shorter step (README, "Training speed").
CPU_TRAINING_ATTENTION = [SDPBackend.MATH]


@dataclass
class PoemTransformerConfig:
    vocab_size: int
    d_model: int = 256
    num_heads: int = 4
    num_encoder_layers: int = 4
    num_decoder_layers: int = 4
    dim_feedforward: int = 1024
    dropout: float = 0.1
    max_len: int = 200
    pad_id: int = 0

    def architecture(self) -> dict:
        """The shape of the network, by the names the trainer's config and the model manifest also use."""
        return {name: getattr(self, name) for name in ARCHITECTURE}

    @classmethod
    def of(cls, vocab_size: int, settings: object, dropout: float = 0.1, pad_id: int = 0) -> "PoemTransformerConfig":
        """From any object (trainer config, manifest) holding the ARCHITECTURE fields by name."""
        return cls(vocab_size=vocab_size, dropout=dropout, pad_id=pad_id,
                   **{name: getattr(settings, name) for name in ARCHITECTURE})


# the fields that fix the network's shape: PoemsConfig, PoemTransformerConfig and PoemsManifest all carry them by name
ARCHITECTURE = ("d_model", "num_heads", "num_encoder_layers", "num_decoder_layers", "dim_feedforward", "max_len")


class Attention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        self.h, self.dh = num_heads, d_model // num_heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.scale = 1.0 / math.sqrt(self.dh)   # 1.0 once folded into the query weights
        self.qkv: nn.Linear | None = None        # set by fold_for_inference()
        self.fused = False                       # as onnxruntime MultiHeadAttention when exported

    @torch.no_grad()
    def fold_for_inference(self) -> None:
        """Export-time rewrite computing the same function with fewer graph nodes: the 1/sqrt(Dh) scale moves into
        the query weights, and Q, K, V become one matmul."""
        self.q.weight.mul_(self.scale)
        self.q.bias.mul_(self.scale)
        self.scale = 1.0
        d = self.q.in_features
        self.qkv = nn.Linear(d, 3 * d)
        self.qkv.weight.copy_(torch.cat([self.q.weight, self.k.weight, self.v.weight]))
        self.qkv.bias.copy_(torch.cat([self.q.bias, self.k.bias, self.v.bias]))

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.h, self.dh).transpose(1, 2)  # (B, H, T, Dh)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.k(x)), self.split(self.v(x))  # 2 x (B, H, T, Dh)

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, N, D) -> q, k, v, each (B, H, N, Dh)."""
        if self.qkv is None:
            return (self.split(self.q(x)), *self.project_kv(x))
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)  # (3, B, H, N, Dh)
        return qkv[0], qkv[1], qkv[2]

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, N, D) queries; k, v (B, H, T, Dh); mask additive, broadcastable to (B, H, N, T), or when fused
        the (B, T) int32 keep-mask (see PoemTransformer.decoder_masks)."""
        if self.fused:
            return self.out(PaddedAttention.apply(self.q(x), k, v, mask, self.h, self.dh))
        return self.attend_q(self.split(self.q(x)), k, v, mask)

    def attend_self(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The encoder's self-attention over x (B, S, D): mask additive (B, 1, 1, S), or when fused the (B, S) int32
        keep-mask. -> (B, S, D)."""
        if self.fused:
            q, k, v = self.qkv(x).split(self.h * self.dh, dim=-1)                       # 3 x (B, S, D)
            return self.out(PaddedAttention.apply(q, k, v, mask, self.h, self.dh))
        return self.attend_q(*self.project_qkv(x), mask)

    def attend_cached(self, x: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor, mask: torch.Tensor | None,
                      key_keep: torch.Tensor | None = None):
        """Self-attention of new positions x (B, N, D) over the cache past_k/v (B, H, T, Dh) and themselves.
        mask: additive causal + slot mask (B, 1, N, T+N), or None when fused (causal inside the op, which takes
        key_keep (B, T+N) int32, 1 = a filled slot or a new position). -> y (B, N, D), present_k/v (B, H, T+N, Dh)."""
        if self.fused:
            q, k, v = self.qkv(x).split(self.h * self.dh, dim=-1)                       # 3 x (B, N, D)
            y, k, v = SelfAttentionWithCache.apply(q, k, v, key_keep, past_k, past_v, self.h, self.dh)
            return self.out(y), k, v
        q, k, v = self.project_qkv(x)
        k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        return self.attend_q(q, k, v, mask), k, v

    def attend_q(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """q (B, H, N, Dh) projected queries -> (B, N, D)."""
        if self.training:
            with sdpa_kernel(CPU_TRAINING_ATTENTION) if q.device.type == "cpu" else contextlib.nullcontext():
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), dropout_p=self.dropout)
        else:  # plain ops: exports to ONNX with every shape dynamic
            scores = torch.matmul(q, k.transpose(-1, -2))
            if self.scale != 1.0:
                scores = scores * self.scale
            y = torch.matmul(torch.softmax(scores + mask, dim=-1), v)        # (B, H, N, Dh)
        b, _, n, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, n, self.h * self.dh))  # (B, N, D)


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, dim_ff: int, dropout: float):
        super().__init__(nn.Linear(d_model, dim_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim_ff, d_model))


class EncoderLayer(nn.Module):
    def __init__(self, c: PoemTransformerConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.attn = Attention(c.d_model, c.num_heads, c.dropout)
        self.ff = FeedForward(c.d_model, c.dim_feedforward, c.dropout)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, src_mask_add: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn.attend_self(self.ln1(x), src_mask_add))
        return x + self.drop(self.ff(self.ln2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, c: PoemTransformerConfig):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(c.d_model) for _ in range(3))
        self.self_attn = Attention(c.d_model, c.num_heads, c.dropout)
        self.cross_attn = Attention(c.d_model, c.num_heads, c.dropout)
        self.ff = FeedForward(c.d_model, c.dim_feedforward, c.dropout)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor, self_mask: torch.Tensor | None,
                cross_k: torch.Tensor, cross_v: torch.Tensor, src_mask_add: torch.Tensor,
                self_keep: torch.Tensor | None = None):
        """x (B, N, D); past_k/v (B, H, T, Dh) -> x (B, N, D), present_k/v (B, H, T+N, Dh)."""
        y, k, v = self.self_attn.attend_cached(self.ln1(x), past_k, past_v, self_mask, self_keep)
        x = x + self.drop(y)
        x = x + self.drop(self.cross_attn.attend(self.ln2(x), cross_k, cross_v, src_mask_add))
        return x + self.drop(self.ff(self.ln3(x))), k, v


def padding_mask(src_mask: torch.Tensor) -> torch.Tensor:
    """src_mask (B, S), 1 = token -> additive (B, 1, 1, S)."""
    return padding_bias(src_mask, src_mask.dtype)


def source_mask(src_mask: torch.Tensor, fused: bool) -> torch.Tensor:
    """What attention over the source reads: src_mask (B, S), 1 = token -> the int32 keep-mask (B, S) that fused
    nodes take as key_padding_mask, or the additive padding mask (B, 1, 1, S) of plain attention."""
    return src_mask.to(torch.int32) if fused else padding_mask(src_mask)


def causal_mask(position_ids: torch.Tensor, past_k: torch.Tensor) -> torch.Tensor:
    """Key j is visible to query i when pos(j) <= pos(i). Keys are the T cached positions 0..T-1 followed by the
    new ones. Built from tensor shapes only, so the graph stays dynamic in B, T and N. -> (B, 1, N, T+N)."""
    past_pos = torch.cumsum(torch.ones_like(past_k[:, 0, :, 0]), dim=1) - 1.0   # (B, T): 0..T-1
    key_pos = torch.cat([past_pos, position_ids.to(past_pos.dtype)], dim=1)     # (B, T+N)
    visible = key_pos[:, None, :] <= position_ids.to(past_pos.dtype)[:, :, None]  # (B, N, T+N)
    return torch.where(visible, 0.0, NEG_INF)[:, None, :, :]


class PoemTransformer(nn.Module):
    def __init__(self, c: PoemTransformerConfig):
        super().__init__()
        self.config = c
        self.embed = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_id)
        self.pos = nn.Embedding(c.max_len + 8, c.d_model)
        self.encoder_layers = nn.ModuleList(EncoderLayer(c) for _ in range(c.num_encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(c) for _ in range(c.num_decoder_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def fold_for_inference(self) -> "PoemTransformer":
        """Same function, leaner graph (see Attention.fold_for_inference). Export only: returns self."""
        for m in self.modules():
            if isinstance(m, Attention):
                m.fold_for_inference()
        return self.eval()

    def use_fused_attention(self) -> "PoemTransformer":
        """Every attention block (encoder self-attention, decoder self- and cross-attention) as one onnxruntime
        MultiHeadAttention node when exported (the same function in torch). Needs a folded model (one QKV
        projection, scale in the queries). Export only: returns self."""
        blocks = [layer.attn for layer in self.encoder_layers]
        blocks += [a for layer in self.decoder_layers for a in (layer.self_attn, layer.cross_attn)]
        if any(a.qkv is None or a.scale != 1.0 for a in blocks):
            raise ValueError("fused attention needs a folded model: call fold_for_inference() first")
        for a in blocks:
            a.fused = True
        return self

    def embed_tokens(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) * math.sqrt(self.config.d_model) + self.pos(positions)
        return self.drop(x)  # (B, N, D)

    def encode(self, src_ids: torch.Tensor, src_mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """src_ids (B, S), src_mask (B, S) -> cross-attention (K, V) per decoder layer, each (B, H, S, Dh)."""
        positions = torch.cumsum(torch.ones_like(src_ids), dim=1) - 1
        x = self.embed_tokens(src_ids, positions)
        mask = source_mask(src_mask, self.encoder_layers[0].attn.fused)
        for layer in self.encoder_layers:
            x = layer(x, mask)
        memory = self.enc_norm(x)                                                # (B, S, D)
        return [layer.cross_attn.project_kv(memory) for layer in self.decoder_layers]

    def decode(self, input_ids: torch.Tensor, position_ids: torch.Tensor, src_mask: torch.Tensor,
               past: list[tuple[torch.Tensor, torch.Tensor]], cross: list[tuple[torch.Tensor, torch.Tensor]],
               last_only: bool = True, self_keep: torch.Tensor | None = None):
        """input_ids, position_ids (B, N); past: per layer (K, V) (B, H, T, Dh); self_keep (B, T+N), 1 = a cache
        slot the row has filled or a new position (None: every slot).
        -> logits (B, V) of the last position (or (B, N, V) when last_only=False), present per layer."""
        x = self.embed_tokens(input_ids, position_ids)
        self_mask, src_add = self.decoder_masks(position_ids, past[0][0], src_mask, self_keep)
        keep = None
        if self.decoder_layers[0].self_attn.fused:      # the fused node always takes a keep-mask
            keep = (torch.ones_like(position_ids[:, :1]).expand(-1, past[0][0].shape[2] + position_ids.shape[1])
                    if self_keep is None else self_keep).to(torch.int32)
        present = []
        for layer, (pk, pv), (ck, cv) in zip(self.decoder_layers, past, cross):
            x, k, v = layer(x, pk, pv, self_mask, ck, cv, src_add, keep)
            present.append((k, v))
        h = self.dec_norm(x[:, -1] if last_only else x)
        return F.linear(h, self.embed.weight), present  # tied output projection

    def decoder_masks(self, position_ids: torch.Tensor, past_k: torch.Tensor, src_mask: torch.Tensor,
                      self_keep: torch.Tensor | None = None):
        """The masks every decoder layer reads, built once per call: plain attention gets additive ones (causal
        (B, 1, N, T+N) plus the unfilled slots of `self_keep`, padding (B, 1, 1, S)); fused attention gets no
        causal mask (its nodes are unidirectional: the new positions come after every cache slot) and the source
        keep-mask as int32 (B, S)."""
        if self.decoder_layers[0].self_attn.fused:
            return None, source_mask(src_mask, fused=True)
        causal = causal_mask(position_ids, past_k)
        if self_keep is not None:
            causal = causal + padding_bias(self_keep, causal.dtype)
        return causal, source_mask(src_mask, fused=False)

    def empty_cache(self, batch: int, device: torch.device | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        c = self.config
        z = torch.zeros(batch, c.num_heads, 0, c.d_model // c.num_heads, device=device)
        return [(z, z) for _ in range(c.num_decoder_layers)]

    def forward(self, src_ids: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: tgt_in (B, N) starting with <sos> -> logits (B, N, V)."""
        cross = self.encode(src_ids, src_mask)
        positions = torch.cumsum(torch.ones_like(tgt_in), dim=1) - 1
        logits, _ = self.decode(tgt_in, positions, src_mask, self.empty_cache(len(tgt_in), tgt_in.device), cross,
                                last_only=False)
        return logits
