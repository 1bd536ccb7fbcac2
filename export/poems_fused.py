"""The poem graphs with onnxruntime's fused attention: the ONNX side.

`PoemTransformer.use_fused_attention()` (trainers.poems_model, ops in trainers.poems_attention) makes every attention
block (the encoder's self-attention, the decoder's self- and cross-attention) export as one
`com.microsoft.MultiHeadAttention` node; export.poems then exports the usual `EncoderGraph` and `DecoderGraph`, so
the graphs' inputs and outputs are exactly the contract's and they are checked against the unfused training model
like every export (logit parity, identical greedy/beam tokens). Fewer nodes means less fixed cost per call, which is
most of a one-token step on a small model. This module only completes the nodes after export.
"""
from __future__ import annotations

import onnx

from trainers.poems_attention import MHA_DOMAIN, MHA_OP

__all__ = ["MHA_DOMAIN", "MHA_OP", "insert_unused_inputs"]

# MultiHeadAttention's inputs: query, key, value, bias, key_padding_mask, attention_bias, past_key, past_value.
# Our nodes are emitted without the unused ones; `insert_unused_inputs` puts empty names in their place. Self-attention
# (3 outputs: y, present K, present V) uses query, key, value, key_padding_mask, past_key, past_value;
# cross-attention (1 output) uses query, key, value, key_padding_mask.
_UNUSED_SLOTS = {3: (3, 5), 1: (3,)}         # by output count: the slots to leave empty, in insertion order


def insert_unused_inputs(model: onnx.ModelProto) -> int:
    """Give our MultiHeadAttention nodes their full input list (empty names for the inputs they do not use).
    Returns how many nodes were fused attention."""
    count = 0
    for node in model.graph.node:
        if node.op_type == MHA_OP and node.domain == MHA_DOMAIN:
            inputs = list(node.input)
            for slot in _UNUSED_SLOTS[len(node.output)]:
                inputs.insert(slot, "")
            del node.input[:]
            node.input.extend(inputs)
            count += 1
    return count
