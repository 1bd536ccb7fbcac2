"""int8 variants of an exported poem model: 8-bit weight-only quantization of the Transformer's MatMuls.

    python -m export.quantize genrt/models/poems genrt/models/poems_int8

Every MatMul with constant weights becomes onnxruntime's MatMulNBits: weights stored as int8 in blocks of 32 along
the input dimension, each block with its own scale (symmetric), and accuracy_level 4, which quantizes the
activations to int8 per block on the fly and runs integer dot products (VNNI where the CPU has it). Blocks of 32
keep rows independent: onnxruntime computes a lone row with its matrix-vector kernel and pairs of rows with another,
and only at this block size do the two agree bit for bit, so a prompt decodes the same alone or in a batch
(export.poem_invariance checks the written graphs and the manifest declares it). No calibration
set is needed. Against plain dynamic quantization (MatMulInteger with per-tensor activation scales) it is both
closer to fp32 (finer scales) and faster for batch-1 decoding, whose matrix-vector products it is built for
(benchmarks/results/quality.md and latest.md).

`--scheme dynamic` writes the other int8 form instead: MatMulInteger with per-tensor activation scales quantized on
the fly. It is slower for one sequence but faster when many rows share each step (beam search, batches of
prompts), where MatMulNBits' matrix-vector kernels lose their edge; README has the measured trade-off.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import onnx

from export.variant import write_variant
from genrt.contract import POEMS_KIND


BITS, BLOCK_SIZE, ACCURACY_LEVEL = 8, 32, 4   # int8 blocks of 32; int8 activations, integer dot products
SCHEMES = ("nbits", "dynamic")


def quantize_graph(src: Path, dst: Path, scheme: str = "nbits") -> None:
    if scheme == "dynamic":
        return quantize_graph_dynamic(src, dst)
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


def quantize_poems(src_dir: str | Path, out_dir: str | Path, scheme: str = "nbits", force: bool = False) -> Path:
    """Write an int8 copy of a poem model directory; the manifest says precision 'int8'."""
    return write_variant(src_dir, out_dir, "int8", lambda src, dst: quantize_graph(src, dst, scheme), POEMS_KIND,
                         force)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="fp32 poem model directory")
    parser.add_argument("out", help="directory for the int8 copy")
    parser.add_argument("--force", action="store_true", help="replace a non-empty OUT")
    parser.add_argument("--scheme", choices=SCHEMES, default="nbits",
                        help="nbits: fastest for one sequence (default); dynamic: for beams and batches")
    args = parser.parse_args(argv)
    from export.model_dir import ExportError
    try:
        print(f"wrote {quantize_poems(args.src, args.out, args.scheme, args.force)}")
    except ExportError as e:
        raise SystemExit(f"export failed: {e}") from None


if __name__ == "__main__":
    main()
