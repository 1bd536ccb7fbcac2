"""int8 variants of an exported poem model: 8-bit quantization of the Transformer's MatMuls.

    python -m export.quantize genrt/models/poems genrt/models/poems_int8 [--scheme rows|nbits|dynamic]

`rows` (the default, and the bundled int8 model): int8 weights per output column, activations quantized to int8
per row on the fly, exact int32 products (export/row_int8.py). A row's numbers never depend on the other rows of a
call, so a prompt decodes the same alone or in a batch, and onnxruntime's integer GEMM reuses each weight across
rows: the form for many prompts at once (a 16-row decoder step costs 3.8x a one-row step, with `nbits` 7.3x;
docs/performance.md). `nbits`: onnxruntime's MatMulNBits, weights in 8-bit blocks of 32 with int8 activations per
block; the fastest for a single sequence (a one-row step ~20 % shorter than with `rows`), batch-invariant only at
blocks of 32, and its cost grows linearly with rows. `dynamic`: MatMulInteger with one activation scale per call
(per tensor): a row's numbers depend on its neighbours, so it is declared not batch-invariant. No scheme needs a
calibration set. export.poem_invariance checks each written directory and the manifest declares what it
guarantees.

`--cache-outputs new` (the default) also rewrites the decoder's self-attention so that it returns only the new
positions' keys and values, not the whole cache grown (export.poem_new_kv): the same logits, bit for bit, without
copying every row's cache each step. Its cache stays on the host, as int8 graphs are for CPUs; `present` keeps the
grown cache.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import onnx

from export.model_dir import ExportError, command_errors
from export.variant import write_variant
from genrt.contract import CACHE_OUTPUTS, POEMS_KIND, read_manifest


BITS, BLOCK_SIZE, ACCURACY_LEVEL = 8, 32, 4   # int8 blocks of 32; int8 activations, integer dot products
SCHEMES = ("rows", "nbits", "dynamic")


def quantize_graph(src: Path, dst: Path, scheme: str = "rows") -> None:
    if scheme == "dynamic":
        return quantize_graph_dynamic(src, dst)
    if scheme == "rows":
        from export.row_int8 import quantize_rows
        onnx.save(quantize_rows(onnx.load(str(src))), str(dst))
        return
    if scheme != "nbits":
        raise ValueError(f"unknown int8 scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(block_size=BLOCK_SIZE, is_symmetric=True, accuracy_level=ACCURACY_LEVEL,
                                          bits=BITS)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=BITS, block_size=BLOCK_SIZE, is_symmetric=True,
                                     accuracy_level=ACCURACY_LEVEL, algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst), False)      # False: weights stay inside the file
    model = onnx.load(str(dst))
    onnx.checker.check_model(model)
    if not any(node.op_type == "MatMulNBits" for node in model.graph.node):
        raise RuntimeError(f"{src}: no MatMul was quantized")


def quantize_graph_dynamic(src: Path, dst: Path) -> None:
    """int8 weights per output channel; activations quantized per call (per tensor)."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])
    onnx.checker.check_model(onnx.load(str(dst)))


def quantize_poems(src_dir: str | Path, out_dir: str | Path, scheme: str = "rows", force: bool = False,
                   cache_outputs: str = "new") -> Path:
    """Write an int8 copy of a poem model directory; the manifest says precision 'int8' and what the decoder
    returns of its cache (`cache_outputs`, module docstring)."""
    from export.poem_new_kv import rewrite_file
    if cache_outputs not in CACHE_OUTPUTS:
        raise ValueError(f"cache_outputs must be one of {', '.join(CACHE_OUTPUTS)}, got {cache_outputs!r}")
    manifest = read_manifest(src_dir, expected_kind=POEMS_KIND)
    if manifest.cache_outputs == "new" and cache_outputs == "present":
        raise ExportError(f"{src_dir}: its decoder returns only the new keys and values; quantize the directory "
                          f"python -m export.poems wrote for a decoder with the grown cache")

    def convert(src: Path, dst: Path) -> None:
        quantize_graph(src, dst, scheme)
        if src.name == manifest.decoder_file and cache_outputs != manifest.cache_outputs:
            rewrite_file(dst, dst, replace(manifest, precision="int8"))   # checked against the int8 graph written
    return write_variant(src_dir, out_dir, "int8", convert, POEMS_KIND, force, cache_outputs=cache_outputs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="fp32 poem model directory")
    parser.add_argument("out", help="directory for the int8 copy")
    parser.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    parser.add_argument("--scheme", choices=SCHEMES, default="rows",
                        help="rows: per-row int8, exact integer products (default); nbits: MatMulNBits, fastest for "
                             "one sequence; dynamic: per-call activation scale, not batch-invariant")
    parser.add_argument("--cache-outputs", choices=CACHE_OUTPUTS, default="new",
                        help="new: the decoder returns only the new keys and values, no step copies the cache "
                             "(default; host cache); present: the whole cache grown, for a device cache")
    args = parser.parse_args(argv)
    with command_errors():
        print(f"wrote {quantize_poems(args.src, args.out, args.scheme, args.force, args.cache_outputs)}")


if __name__ == "__main__":
    main()
