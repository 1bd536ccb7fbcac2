"""int8 variants of an exported poem model: dynamic quantization of the Transformer's MatMuls.

    python -m export.quantize genrt/models/poems genrt/models/poems_int8

Weights become int8 (per output channel); activations are quantized on the fly per call, which needs no
calibration set and suits batch-1 decoding where the MatMuls are weight-bandwidth bound.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import onnx

from genrt.contract import POEMS_KIND, read_manifest, write_manifest


def quantize_graph(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])
    onnx.checker.check_model(onnx.load(str(dst)))


def quantize_poems(src_dir: str | Path, out_dir: str | Path) -> Path:
    """Write an int8 copy of a poem model directory; the manifest says precision 'int8'."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    manifest = read_manifest(src_dir, expected_kind=POEMS_KIND)
    out_dir.mkdir(parents=True, exist_ok=True)
    for file in manifest.graph_files():
        quantize_graph(src_dir / file, out_dir / file)
    write_manifest(out_dir, dataclasses.replace(manifest, precision="int8"))
    read_manifest(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="fp32 poem model directory")
    parser.add_argument("out", help="directory for the int8 copy")
    args = parser.parse_args(argv)
    print(f"wrote {quantize_poems(args.src, args.out)}")


if __name__ == "__main__":
    main()
