"""A poem decoder that returns only the new positions' keys and values, so that no step copies the cache.

    python -m export.poem_new_kv MODEL_DIR

export.poems writes each self-attention block as onnxruntime's fused MultiHeadAttention. It takes the cache, past
K/V of shape (B, H, T, Dh), and returns it grown by the new positions as `present`, (B, H, T+N, Dh). So every step
copies every row's whole cache. At 16 rows and 80 cached positions, self-attention was 40 % of an int8 step in a
profile. This module rewrites each self-attention node as standard ops over the same cache layout. The graph then
returns only `new_key.i` / `new_value.i`, (B, H, N, Dh), and the runtime writes them into its own cache slots
(genrt.poems.model, cache_outputs "new"):

    qkv (B, N, 3E) -> Reshape (B, N, 3H, Dh) -> Transpose (B, 3H, N, Dh) -> Split -> q, new K, new V (B, H, N, Dh)
    scores = Concat(q . past_K^T (B, H, N, T), q . new_K^T (B, H, N, N)) + bias (B, 1, N, T+N)
    p = Softmax(scores), split at T  ->  out = p_past . past_V + p_new . new_V  ->  (B, N, E)

The products with keys are FusedMatMul with transB, so the cache is read where it lies, never transposed or copied.
The bias is what MultiHeadAttention applies: its mask_filter_value (-10000) where `self_mask` leaves a slot out and
after the query among the new positions (causal), 0 elsewhere. Measured with onnxruntime 1.32 on AVX-512, the
rewritten graph's logits are bit-identical to the fused graph's, fp32 and per-row int8 alike. `verify` checks every
rewrite on random steps of several shapes, and the directory's batch invariance is checked again
(export.poem_invariance). The weights are untouched. A device cache (CUDA, IOBinding) grows by taking `present`
back as it comes, so the rewrite is for model directories run on CPU; export.quantize writes it into int8 ones.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.model_dir import ExportError, command_errors, require, staged_rewrite
from export.poem_invariance import declare_batch_invariance
from export.poems_fused import MHA_DOMAIN, MHA_OP
from genrt.contract import (
    ALL_LOGITS, LOG_NORM, POEMS_KIND, SELF_MASK, PoemsManifest, cross_key, cross_value, new_key, new_value,
    past_key, past_value, present_key, present_value, read_manifest, write_manifest,
)

MASK_FILTER_VALUE = -10000.0    # MultiHeadAttention's default score for a masked key
# Shapes verify() runs, (rows, cached positions, new positions): one-token steps, and whole prefixes (scoring,
# the no-cache path), the calls the contract defines.
VERIFY_SHAPES = ((1, 0, 1), (1, 16, 1), (3, 32, 1), (5, 48, 1), (2, 0, 7), (4, 0, 16))
# A rewrite whose logits move by more than this share of their largest magnitude is wired wrong: the export's
# parity bound for float graphs. Per-row int8 may round a differently summed activation to the neighbouring step,
# so there the bound is wider. Exact equality is reported, not required.
VERIFY_TOLERANCE = {"fp32": 1e-4, "fp16": 1e-3, "int8": 1e-2}


def _self_attention_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    return [n for n in graph.node if n.op_type == MHA_OP and n.domain == MHA_DOMAIN and len(n.output) == 3
            and len(n.input) >= 8 and n.input[6] and n.input[7]]


def _constant_values(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def _qkv_split(graph: onnx.GraphProto, attention: onnx.NodeProto, width: int) -> onnx.NodeProto:
    """The Split that cuts the fused projection (B, N, 3E) into the node's query, key and value."""
    node = next((n for n in graph.node if n.op_type == "Split" and list(n.output) == list(attention.input[:3])),
                None)
    require(node is not None, f"{attention.name}: query, key and value do not come from one Split")
    axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
    sizes = _constant_values(graph, node.input[1]) if len(node.input) > 1 else None
    require(axis in (-1, 2) and sizes is not None and sizes.tolist() == [width] * 3,
            f"{node.name}: expected three equal parts of {width} on the last axis")
    consumers = [n for n in graph.node if set(n.input) & set(node.output)]
    require(consumers == [attention], f"{node.name}: its outputs feed more than {attention.name}")
    return node


def _attribute(node: onnx.NodeProto, name: str, default):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _shared_nodes(mask_filter: float) -> tuple[list, list]:
    """Nodes computed once for every layer: the split point of the scores (T, N) and the bias (B, 1, N, T+N)."""
    c = "new_kv/"
    inits = [numpy_helper.from_array(np.array(1.0, np.float32), c + "one"),
             numpy_helper.from_array(np.array(-mask_filter, np.float32), c + "filter_neg"),
             numpy_helper.from_array(np.array(mask_filter, np.float32), c + "filter"),
             numpy_helper.from_array(np.array(0.0, np.float32), c + "zero_f"),
             numpy_helper.from_array(np.array(0, np.int64), c + "zero"),
             numpy_helper.from_array(np.array(1, np.int64), c + "step"),
             numpy_helper.from_array(np.array([0], np.int64), c + "axis0"),
             numpy_helper.from_array(np.array([1, 2], np.int64), c + "axes12"),
             numpy_helper.from_array(np.array([1], np.int64), c + "axis1")]
    nodes = [
        helper.make_node("Shape", [past_key(0)], [c + "past_len"], start=2, end=3),                      # [T]
        helper.make_node("Shape", ["input_ids"], [c + "new_len"], start=1, end=2),                       # [N]
        helper.make_node("Concat", [c + "past_len", c + "new_len"], [c + "split"], axis=0),              # [T, N]
        helper.make_node("Squeeze", [c + "past_len", c + "axis0"], [c + "t"]),
        helper.make_node("Squeeze", [c + "new_len", c + "axis0"], [c + "n"]),
        helper.make_node("Add", [c + "t", c + "n"], [c + "total"]),
        # key j of T+N is after query i of N when j - T > i: masked like a slot left out
        helper.make_node("Range", [c + "zero", c + "total", c + "step"], [c + "keys"]),
        helper.make_node("Sub", [c + "keys", c + "t"], [c + "key_offset"]),                          # (T+N,)
        helper.make_node("Range", [c + "zero", c + "n", c + "step"], [c + "queries"]),
        helper.make_node("Unsqueeze", [c + "queries", c + "axis1"], [c + "query_col"]),              # (N, 1)
        helper.make_node("Greater", [c + "key_offset", c + "query_col"], [c + "future"]),            # (N, T+N)
        helper.make_node("Where", [c + "future", c + "filter", c + "zero_f"], [c + "causal"]),
        # self_mask 1 -> 0, 0 -> mask_filter
        helper.make_node("Sub", [SELF_MASK, c + "one"], [c + "mask_m1"]),
        helper.make_node("Mul", [c + "mask_m1", c + "filter_neg"], [c + "padding"]),                 # (B, T+N)
        helper.make_node("Unsqueeze", [c + "padding", c + "axes12"], [c + "padding4"]),              # (B, 1, 1, T+N)
        helper.make_node("Add", [c + "padding4", c + "causal"], [c + "bias"]),                       # (B, 1, N, T+N)
    ]
    return nodes, inits


def _attention_nodes(split: onnx.NodeProto, attention: onnx.NodeProto, layer: int, heads: int, head_dim: int,
                     scale: float) -> tuple[list, list]:
    """The projection's split into heads, and the attention over [cache | new positions], for one layer."""
    p, c = f"new_kv/{layer}/", "new_kv/"
    out, _, _ = attention.output
    past_k, past_v = attention.input[6], attention.input[7]
    inits = [numpy_helper.from_array(np.array([0, 0, 3 * heads, head_dim], np.int64), p + "heads_shape"),
             numpy_helper.from_array(np.array([heads] * 3, np.int64), p + "thirds"),
             numpy_helper.from_array(np.array([0, 0, heads * head_dim], np.int64), p + "flat_shape")]
    nodes = [
        helper.make_node("Reshape", [split.input[0], p + "heads_shape"], [p + "qkv4"]),              # (B, N, 3H, Dh)
        helper.make_node("Transpose", [p + "qkv4"], [p + "qkv_h"], perm=[0, 2, 1, 3]),               # (B, 3H, N, Dh)
        helper.make_node("Split", [p + "qkv_h", p + "thirds"], [p + "q", new_key(layer), new_value(layer)], axis=1),
        helper.make_node("FusedMatMul", [p + "q", past_k], [p + "s_past"], domain=MHA_DOMAIN, transB=1,
                         alpha=scale),                                                               # (B, H, N, T)
        helper.make_node("FusedMatMul", [p + "q", new_key(layer)], [p + "s_new"], domain=MHA_DOMAIN, transB=1,
                         alpha=scale),                                                               # (B, H, N, N)
        helper.make_node("Concat", [p + "s_past", p + "s_new"], [p + "s"], axis=-1),
        helper.make_node("Add", [p + "s", c + "bias"], [p + "s_masked"]),
        helper.make_node("Softmax", [p + "s_masked"], [p + "probs"], axis=-1),
        helper.make_node("Split", [p + "probs", c + "split"], [p + "p_past", p + "p_new"], axis=-1),
        helper.make_node("MatMul", [p + "p_past", past_v], [p + "o_past"]),                          # (B, H, N, Dh)
        helper.make_node("MatMul", [p + "p_new", new_value(layer)], [p + "o_new"]),
        helper.make_node("Add", [p + "o_past", p + "o_new"], [p + "o"]),
        helper.make_node("Transpose", [p + "o"], [p + "o_t"], perm=[0, 2, 1, 3]),                    # (B, N, H, Dh)
        helper.make_node("Reshape", [p + "o_t", p + "flat_shape"], [out]),                           # (B, N, E)
    ]
    return nodes, inits


def rewrite_decoder(model: onnx.ModelProto, manifest: PoemsManifest) -> onnx.ModelProto:
    """A copy of a fused-attention decoder whose self-attention returns only the new positions (module docstring)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    require(any(i.name == SELF_MASK for i in graph.input),
            f"the decoder has no {SELF_MASK} input: upgrade it first with python -m export.poem_self_mask DIR")
    layers = _self_attention_nodes(graph)
    require(len(layers) == manifest.num_decoder_layers,
            f"expected {manifest.num_decoder_layers} fused self-attention nodes with a cache, found {len(layers)} "
            f"(a plain-attention export, or one already rewritten?)")
    width = manifest.d_model
    splits = [_qkv_split(graph, node, width) for node in layers]                # layer i's projection split
    replaced = {id(n) for n in splits}
    filters = {_attribute(n, "mask_filter_value", MASK_FILTER_VALUE) for n in layers}
    require(len(filters) == 1, "the self-attention nodes mask with different values")
    for node in layers:
        require(_attribute(node, "unidirectional", 0) == 1, f"{node.name} is not causal (unidirectional=1)")
        require(_attribute(node, "num_heads", 0) == manifest.num_heads, f"{node.name}: num_heads differs")
        require(list(node.input[6:8]) == [past_key(layers.index(node)), past_value(layers.index(node))],
                f"{node.name} does not read the cache of its layer")
    shared, inits = _shared_nodes(filters.pop())
    nodes, presents = list(shared), {}
    for node in graph.node:
        if id(node) in replaced:
            continue                                                        # done by its layer's attention below
        if node in layers:
            i = layers.index(node)
            scale = _attribute(node, "scale", 1.0 / np.sqrt(manifest.head_dim))
            more, more_inits = _attention_nodes(splits[i], node, i, manifest.num_heads, manifest.head_dim, scale)
            nodes += more
            inits += more_inits
            presents[node.output[1]], presents[node.output[2]] = new_key(i), new_value(i)
            continue
        nodes.append(node)
    used = {name for n in nodes for name in n.input} | {o.name for o in graph.output}
    nodes = [n for n in nodes if n.op_type not in ("Cast", "Constant") or n.output[0] in used]
    # (the int32 mask MultiHeadAttention took, the old splits' sizes)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for n in nodes for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]                 # the old splits' sizes go
    del graph.initializer[:]
    graph.initializer.extend(kept + inits)
    kv_shape = ["batch", manifest.num_heads, "new_len", manifest.head_dim]
    for out in graph.output:
        if out.name in presents:
            name = presents[out.name]
            out.CopyFrom(helper.make_tensor_value_info(name, TensorProto.FLOAT, kv_shape))
    onnx.checker.check_model(model)
    return model


def _session(model_bytes: bytes):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def _random_step(manifest: PoemsManifest, rows: int, cached: int, new: int, rng: np.random.Generator) -> dict:
    """Feeds of one decoder call: some cached slots left out (rows of different lengths), sources with padding."""
    h, dh, src = manifest.num_heads, manifest.head_dim, 16
    self_mask = np.ones((rows, cached + new), np.float32)
    for r in range(rows):
        if cached:
            self_mask[r, cached - rng.integers(0, cached // 2 + 1):cached] = 0.0
    src_mask = np.ones((rows, src), np.float32)
    src_mask[:, src - rng.integers(0, src // 2):] = 0.0
    feeds = {"input_ids": rng.integers(0, len(manifest.vocab), (rows, new)).astype(np.int64),
             "position_ids": np.broadcast_to(np.arange(cached, cached + new), (rows, new)).astype(np.int64),
             "src_mask": src_mask, SELF_MASK: self_mask}
    for i in range(manifest.num_decoder_layers):
        for name, length in ((past_key(i), cached), (past_value(i), cached), (cross_key(i), src),
                             (cross_value(i), src)):
            feeds[name] = rng.standard_normal((rows, h, length, dh)).astype(np.float32)
    return feeds


def verify(fused: onnx.ModelProto, rewritten: onnx.ModelProto, manifest: PoemsManifest, seed: int = 0) -> dict:
    """Run both graphs on random steps of VERIFY_SHAPES; the rewrite's logits (and scoring logits, log-norm) and its
    new keys and values against the fused graph's and the last N positions of its `present`.
    -> {"max_abs_difference", "identical"}; ExportError beyond the precision's VERIFY_TOLERANCE."""
    old, new = _session(fused.SerializeToString()), _session(rewritten.SerializeToString())
    rng = np.random.default_rng(seed)
    extra = [n for n in (ALL_LOGITS, LOG_NORM) if n in {o.name for o in old.get_outputs()}]
    worst, identical = 0.0, True
    for rows, cached, new_len in VERIFY_SHAPES:
        feeds = _random_step(manifest, rows, cached, new_len, rng)
        layers = range(manifest.num_decoder_layers)
        a = old.run(["logits", *extra] + [n for i in layers for n in (present_key(i), present_value(i))], feeds)
        b = new.run(["logits", *extra] + [n for i in layers for n in (new_key(i), new_value(i))], feeds)
        pairs = list(zip(a[:1 + len(extra)], b[:1 + len(extra)]))
        pairs += [(x[:, :, cached:, :], y) for x, y in zip(a[1 + len(extra):], b[1 + len(extra):])]
        for x, y in pairs:
            require(x.shape == y.shape, f"rows {rows}, cached {cached}, new {new_len}: shapes {x.shape} != {y.shape}")
            identical &= bool(np.array_equal(x, y))
            worst = max(worst, float(np.abs(x - y).max()) if x.size else 0.0)
        scale = max(1.0, float(np.abs(a[0]).max()))
        require(worst <= VERIFY_TOLERANCE.get(manifest.precision, VERIFY_TOLERANCE["int8"]) * scale,
                f"rows {rows}, cached {cached}, new {new_len}: the rewritten decoder differs by {worst:.3g}")
    return {"max_abs_difference": worst, "identical": identical}


def rewrite_file(src: Path, dst: Path, manifest: PoemsManifest) -> dict:
    """Rewrite the decoder at `src` into `dst` (they may be the same path), verified. -> verify()'s report."""
    fused = onnx.load(str(src))
    rewritten = rewrite_decoder(fused, manifest)
    report = verify(fused, rewritten, manifest)
    onnx.save(rewritten, str(dst))
    return report


def upgrade(model_dir: str | Path) -> dict:
    """Rewrite the decoder of `model_dir` in place (staged), declare cache_outputs "new" and check batch
    invariance again. -> verify()'s report with "batch_invariant"."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir, expected_kind=POEMS_KIND)
    if manifest.cache_outputs == "new":
        raise ExportError(f"{model_dir}: its decoder already returns only the new keys and values")
    with staged_rewrite(model_dir) as tmp:
        report = rewrite_file(model_dir / manifest.decoder_file, tmp / manifest.decoder_file, manifest)
        write_manifest(tmp, dataclasses.replace(manifest, cache_outputs="new"))
        read_manifest(tmp)
        report["batch_invariant"] = declare_batch_invariance(tmp)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="poem model directory exported with fused attention (rewritten in place)")
    args = parser.parse_args(argv)
    with command_errors():
        report = upgrade(args.model_dir)
    same = "bit-identical" if report["identical"] else f"within {report['max_abs_difference']:.3g}"
    print(f"rewrote {args.model_dir}: logits and new keys/values {same} to the fused decoder's; batch invariant: "
          f"{report['batch_invariant']}")


if __name__ == "__main__":
    main()
