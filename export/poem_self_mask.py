"""Give an exported poem decoder the contract's `self_mask` input, keeping every weight as it is.

    python -m export.poem_self_mask MODEL_DIR

Decoders exported before the mask existed attend to every cache slot, so rows of different lengths cannot share a
call. This rewrites such a graph the way export.poems now builds it: `self_mask` (B, T+N) float32, cast once to
int32 and given to every self-attention MultiHeadAttention node as its `key_padding_mask`. Only graphs with fused
attention are rewritten (export.poems' default); a plain-attention export is re-exported instead. The directory is
rewritten in a staged copy, its batch invariance checked and declared (export.poem_invariance), then renamed into
place.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from export.model_dir import ExportError, command_errors, require, staged_rewrite
from export.poem_invariance import declare_batch_invariance
from export.poems_fused import MHA_DOMAIN, MHA_OP
from genrt.contract import POEMS_KIND, SELF_MASK, read_manifest

KEY_PADDING_SLOT = 4          # MultiHeadAttention inputs: query, key, value, bias, key_padding_mask, ...
SELF_ATTENTION_OUTPUTS = 3    # y, present_key, present_value (cross-attention has 1)


def add_self_mask(graph: onnx.GraphProto) -> int:
    """Add the input and wire it into every self-attention node. -> how many nodes now read it."""
    if any(i.name == SELF_MASK for i in graph.input):
        return 0
    nodes = [n for n in graph.node if n.op_type == MHA_OP and n.domain == MHA_DOMAIN
             and len(n.output) == SELF_ATTENTION_OUTPUTS]
    require(bool(nodes), "the decoder has no fused self-attention node: re-export it with python -m export.poems")
    keep = f"{SELF_MASK}_int32"
    for node in nodes:
        require(len(node.input) > KEY_PADDING_SLOT and not node.input[KEY_PADDING_SLOT],
                f"{node.name} already has a key_padding_mask")
        node.input[KEY_PADDING_SLOT] = keep
    graph.input.insert(3, helper.make_tensor_value_info(SELF_MASK, TensorProto.FLOAT, ["batch", "total_len"]))
    graph.node.insert(0, helper.make_node("Cast", [SELF_MASK], [keep], to=TensorProto.INT32, name="self_mask_cast"))
    return len(nodes)


def upgrade(model_dir: str | Path) -> bool:
    """Rewrite the decoder of `model_dir` in place (staged). -> whether the result is batch invariant."""
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir, expected_kind=POEMS_KIND)
    with staged_rewrite(model_dir) as tmp:
        model = onnx.load(str(model_dir / manifest.decoder_file))
        if not add_self_mask(model.graph):
            raise ExportError(f"{model_dir / manifest.decoder_file} already has {SELF_MASK}")
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp / manifest.decoder_file))
        invariant = declare_batch_invariance(tmp)
    return invariant


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="poem model directory whose decoder lacks self_mask")
    args = parser.parse_args(argv)
    with command_errors("upgrade failed"):
        invariant = upgrade(args.model_dir)
    print(f"upgraded {args.model_dir} (batch invariant: {'yes' if invariant else 'no'})")


if __name__ == "__main__":
    main()
