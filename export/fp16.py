"""fp16 variants of an exported model directory (faces or poems), meant for CUDA.

    python -m export.fp16 genrt/models/poems genrt/models/poems_fp16

Every graph's weights and internal arithmetic become float16; its inputs and outputs keep the contract's dtypes
(float32 latents, KV cache and logits; uint8 images) through Cast nodes at the edges, so the runtime and the
manifest's graph specs are the same for every precision. On a CPU most float16 kernels are missing and onnxruntime
casts back and forth, so fp16 is for GPUs; it is checked here against fp32 on the CPU anyway, which is enough to
catch a broken conversion.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import onnx

from export.variant import write_variant
from genrt.contract import read_manifest


def convert_graph(src: Path, dst: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True))
    model.topological_sort()                         # the converter appends its edge Casts out of order
    onnx.save(model.model, str(dst))                 # one file: weights halve, nothing external
    onnx.checker.check_model(onnx.load(str(dst)))


def fp16_copy(src_dir: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Write a float16 copy of a model directory; the manifest says precision 'fp16'."""
    manifest = read_manifest(src_dir)
    if manifest.precision != "fp32":
        raise ValueError(f"{src_dir} is {manifest.precision}; convert an fp32 model directory")
    return write_variant(src_dir, out_dir, "fp16", convert_graph, force=force)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="fp32 model directory (faces or poems)")
    parser.add_argument("out", help="directory for the fp16 copy")
    parser.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    args = parser.parse_args(argv)
    from export.model_dir import command_errors
    with command_errors():
        print(f"wrote {fp16_copy(args.src, args.out, args.force)}")


if __name__ == "__main__":
    main()
