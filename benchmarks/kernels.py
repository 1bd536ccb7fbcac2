"""The int8 schemes' matrix products at 1, 4 and 32 rows: the poem decoder's weight shapes, one at a time.

    python -m benchmarks.kernels [--model genrt/models/poems] [--quick]

For every weight shape of the decoder (QKV, attention output, feed-forward in and out, output layer) a graph of one
MatMul is timed at M = 1, 4 and 32 rows (a greedy step, a beam-4 step, re-running a 32-character prefix), as fp32,
as per-row int8 (the bundled int8, `export.row_int8`), as MatMulNBits (8-bit blocks of 32, int8 activations per
block) and as dynamic MatMulInteger (`export.quantize --scheme dynamic`), with onnxruntime on one thread. Writes
benchmarks/results/kernels.{json,md}. Needs `onnx` (the train extra).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ROWS = (1, 4, 32)


def decoder_shapes(model_dir: Path) -> list[tuple[str, int, int, int]]:
    """(name, K, N, count per decoder step) of every weight matrix the decoder multiplies by."""
    from genrt.contract import read_manifest
    m = read_manifest(model_dir)
    d, layers = m.d_model, m.num_decoder_layers
    return [("self-attention QKV", d, 3 * d, layers), ("attention out / cross query", d, d, 3 * layers),
            ("feed-forward in", d, m.dim_feedforward, layers), ("feed-forward out", m.dim_feedforward, d, layers),
            ("output layer", d, len(m.vocab), 1)]


def one_matmul(k: int, n: int, path: Path, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    weight = (np.random.default_rng(seed).standard_normal((k, n)) * 0.05).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "one_matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", n])],
                              [numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def variants(k: int, n: int, folder: Path) -> dict[str, Path]:
    from export.quantize import quantize_graph
    fp32 = one_matmul(k, n, folder / "fp32.onnx")
    out = {"fp32": fp32}
    for scheme in ("rows", "nbits", "dynamic"):
        out[scheme] = folder / f"{scheme}.onnx"
        quantize_graph(fp32, out[scheme], scheme)
    return out


def time_rows(path: Path, k: int, repeats: int) -> dict[int, float]:
    """Median µs per call at each row count, one thread."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    result = {}
    for m in ROWS:
        x = rng.standard_normal((m, k)).astype(np.float32)
        for _ in range(repeats // 10 + 1):
            session.run(None, {"x": x})
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            session.run(None, {"x": x})
            times.append(time.perf_counter() - t0)
        result[m] = float(np.median(times) * 1e6)
    return result


def measure(model_dir: Path, repeats: int) -> list[dict]:
    rows = []
    for name, k, n, count in decoder_shapes(model_dir):
        with tempfile.TemporaryDirectory() as tmp:
            for scheme, path in variants(k, n, Path(tmp)).items():
                us = time_rows(path, k, repeats)
                rows.append({"matrix": name, "k": k, "n": n, "per_step": count, "scheme": scheme,
                             **{f"us_m{m}": us[m] for m in ROWS}})
    return rows


def totals(rows: list[dict]) -> dict[str, dict[int, float]]:
    """µs per decoder step spent in matrix products, per scheme and row count (each matrix times its count)."""
    out: dict[str, dict[int, float]] = {}
    for r in rows:
        for m in ROWS:
            out.setdefault(r["scheme"], {}).setdefault(m, 0.0)
            out[r["scheme"]][m] += r[f"us_m{m}"] * r["per_step"]
    return out


def write_markdown(rows: list[dict], model_dir: Path, path: Path) -> None:
    lines = [f"Matrix products of `{model_dir.name}`'s decoder, one MatMul per graph, onnxruntime, 1 thread, median "
             "µs per call (includes ~3 µs of session-call overhead each).", "",
             "| matrix (K x N) | per step | scheme | M = 1 | M = 4 | M = 32 | M=4 / M=1 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['matrix']} ({r['k']} x {r['n']}) | {r['per_step']} | {r['scheme']} | {r['us_m1']:.1f} | "
                     f"{r['us_m4']:.1f} | {r['us_m32']:.1f} | {r['us_m4'] / r['us_m1']:.2f} |")
    lines += ["", "| scheme | all products, M = 1 | M = 4 | M = 32 | M=4 / M=1 | M=32 / M=1 |", "|---|---|---|---|---|---|"]
    for scheme, t in totals(rows).items():
        lines.append(f"| {scheme} | {t[1]:.0f} | {t[4]:.0f} | {t[32]:.0f} | {t[4] / t[1]:.2f} | {t[32] / t[1]:.2f} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "genrt" / "models" / "poems")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true", help="few repeats (smoke run)")
    args = parser.parse_args(argv)
    rows = measure(args.model, repeats=20 if args.quick else 400)
    model = args.model.resolve()
    shown = model.relative_to(ROOT) if model.is_relative_to(ROOT) else model      # no machine paths in results
    result = {"model_dir": str(shown), "rows": rows, "totals": totals(rows)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernels.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    write_markdown(rows, args.model, args.out / "kernels.md")
    print((args.out / "kernels.md").read_text(encoding="utf-8"))
    return result


if __name__ == "__main__":
    main()
