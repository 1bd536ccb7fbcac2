"""One decoder layer's self-attention step, two ways: what a cache layout without `present` would gain.

    python -m benchmarks.attention [--rows 1 4 16 64] [--positions 16 48 80] [--quick]

The bundled decoder runs self-attention as onnxruntime's fused MultiHeadAttention: the new token's query, key and
value (N, 1, 256) and the cache (N, H, T, Dh) go in, and `present`, the whole cache grown by one slot, comes out,
so every step copies every row's cached keys and values. The other form is plain ONNX ops over a cache whose keys
are stored transposed (N, H, Dh, T): scores are one MatMul with no transpose, the new key's score is concatenated,
one Softmax, then the cached values' MatMul plus the new value's share; only the new key (N, H, Dh, 1) and value
(N, H, 1, Dh) come out, to be written into the cache's next slot by the runtime. Both graphs are built here
(onnx.helper), run on one thread with the same inputs, checked to agree (max abs difference), and timed
interleaved. Writes benchmarks/results/attention.{json,md}. Needs `onnx` (the train extra).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.report import save_report

ROOT = Path(__file__).resolve().parents[1]
HEADS, HEAD_DIM = 4, 64                 # the poem model's: d_model 256 in 4 heads
ROWS = (1, 4, 16, 64)
POSITIONS = (16, 48, 80)
MASKED = 5                              # slots at the end of each row's cache that the row has not filled


def fused_graph():
    """query, key, value (N, 1, E) + mask (N, T+1) int32 + past K/V (N, H, T, Dh) -> out, present K/V."""
    from onnx import TensorProto as T, helper as h
    e = HEADS * HEAD_DIM
    node = h.make_node("MultiHeadAttention", ["q", "k", "v", "", "mask", "", "past_k", "past_v"],
                       ["out", "present_k", "present_v"], domain="com.microsoft", num_heads=HEADS, scale=1.0,
                       unidirectional=1)
    inputs = [h.make_tensor_value_info(n, T.FLOAT, ["N", 1, e]) for n in ("q", "k", "v")]
    inputs += [h.make_tensor_value_info("mask", T.INT32, ["N", "total"]),
               h.make_tensor_value_info("past_k", T.FLOAT, ["N", HEADS, "T", HEAD_DIM]),
               h.make_tensor_value_info("past_v", T.FLOAT, ["N", HEADS, "T", HEAD_DIM])]
    outputs = [h.make_tensor_value_info("out", T.FLOAT, ["N", 1, e]),
               h.make_tensor_value_info("present_k", T.FLOAT, None),
               h.make_tensor_value_info("present_v", T.FLOAT, None)]
    return h.make_model(h.make_graph([node], "fused", inputs, outputs),
                        opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])


def plain_graph():
    """query, key, value (N, 1, E) + bias (N, 1, 1, T+1) (0 or -1e9) + past K transposed (N, H, Dh, T) and past V
    (N, H, T, Dh) -> out, new K (N, H, Dh, 1), new V (N, H, 1, Dh)."""
    from onnx import TensorProto as T, helper as h, numpy_helper
    e = HEADS * HEAD_DIM

    def const(name, values):
        return h.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(values, np.int64), name))
    nodes = [const("heads", [0, 1, HEADS, HEAD_DIM]), const("flat", [0, 1, e]), const("zero", [0]),
             const("last", [-1]), const("end", [2 ** 62]), const("axis", [3]),
             h.make_node("Reshape", ["q", "heads"], ["q4"]),
             h.make_node("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),                       # (N, H, 1, Dh)
             h.make_node("Reshape", ["k", "heads"], ["k4"]),
             h.make_node("Transpose", ["k4"], ["new_k"], perm=[0, 2, 3, 1]),                    # (N, H, Dh, 1)
             h.make_node("Reshape", ["v", "heads"], ["v4"]),
             h.make_node("Transpose", ["v4"], ["new_v"], perm=[0, 2, 1, 3]),                    # (N, H, 1, Dh)
             h.make_node("MatMul", ["qh", "past_kt"], ["s_past"]), h.make_node("MatMul", ["qh", "new_k"], ["s_new"]),
             h.make_node("Concat", ["s_past", "s_new"], ["s"], axis=-1), h.make_node("Add", ["s", "bias"], ["s_b"]),
             h.make_node("Softmax", ["s_b"], ["p"], axis=-1),
             h.make_node("Slice", ["p", "zero", "last", "axis"], ["p_past"]),
             h.make_node("Slice", ["p", "last", "end", "axis"], ["p_new"]),
             h.make_node("MatMul", ["p_past", "past_v"], ["o_past"]),
             h.make_node("Mul", ["p_new", "new_v"], ["o_new"]),
             h.make_node("Add", ["o_past", "o_new"], ["o"]),
             h.make_node("Transpose", ["o"], ["o_t"], perm=[0, 2, 1, 3]),
             h.make_node("Reshape", ["o_t", "flat"], ["out"])]
    inputs = [h.make_tensor_value_info(n, T.FLOAT, ["N", 1, e]) for n in ("q", "k", "v")]
    inputs += [h.make_tensor_value_info("bias", T.FLOAT, ["N", 1, 1, "total"]),
               h.make_tensor_value_info("past_kt", T.FLOAT, ["N", HEADS, HEAD_DIM, "T"]),
               h.make_tensor_value_info("past_v", T.FLOAT, ["N", HEADS, "T", HEAD_DIM])]
    outputs = [h.make_tensor_value_info("out", T.FLOAT, ["N", 1, e]),
               h.make_tensor_value_info("new_k", T.FLOAT, None), h.make_tensor_value_info("new_v", T.FLOAT, None)]
    return h.make_model(h.make_graph(nodes, "plain", inputs, outputs), opset_imports=[h.make_opsetid("", 17)])


def session(model):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def feeds(rows: int, positions: int, seed: int = 0) -> tuple[dict, dict]:
    """The same step for both graphs: (fused feeds, plain feeds)."""
    rng = np.random.default_rng(seed)
    e = HEADS * HEAD_DIM
    q, k, v = (rng.standard_normal((rows, 1, e), dtype=np.float32) * 0.1 for _ in range(3))
    past_k = rng.standard_normal((rows, HEADS, positions, HEAD_DIM), dtype=np.float32)
    past_v = rng.standard_normal((rows, HEADS, positions, HEAD_DIM), dtype=np.float32)
    mask = np.ones((rows, positions + 1), np.int32)
    mask[:, positions - min(MASKED, positions - 1):positions] = 0
    bias = np.where(mask == 1, 0.0, -1e9).astype(np.float32)[:, None, None, :]
    fused = {"q": q, "k": k, "v": v, "mask": mask, "past_k": past_k, "past_v": past_v}
    plain = {"q": q, "k": k, "v": v, "bias": bias, "past_kt": np.ascontiguousarray(past_k.transpose(0, 1, 3, 2)),
             "past_v": past_v}
    return fused, plain


def measure(rows: tuple[int, ...], positions: tuple[int, ...], rounds: int, calls: int) -> list[dict]:
    fused, plain = session(fused_graph()), session(plain_graph())
    out = []
    for n in rows:
        for t in positions:
            a, b = feeds(n, t)
            difference = float(np.abs(fused.run(["out"], a)[0] - plain.run(["out"], b)[0]).max())
            times: dict[str, list[float]] = {"fused": [], "plain": []}
            for r in range(rounds):                         # interleaved, alternating which goes first
                for name, s, f in (("fused", fused, a), ("plain", plain, b))[::1 if r % 2 == 0 else -1]:
                    s.run(None, f)
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        s.run(None, f)
                    times[name].append((time.perf_counter() - t0) / calls * 1e6)
            out.append({"rows": n, "positions": t, "fused_us": float(np.median(times["fused"])),
                        "plain_us": float(np.median(times["plain"])), "max_abs_difference": difference})
    return out


def markdown(report: dict) -> str:
    lines = [f"One self-attention step of one decoder layer ({HEADS} heads of {HEAD_DIM}), onnxruntime "
             f"{report['onnxruntime']}, 1 thread, median µs per call over {report['rounds']} interleaved rounds of "
             f"{report['calls']} calls; {report['date']}. Fused: MultiHeadAttention, the whole cache copied into "
             "`present`. Plain: MatMul / Softmax over keys stored transposed, only the new key and value out.", "",
             "| rows | cached positions | fused µs | plain µs | plain / fused | max abs difference |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(f"| {r['rows']} | {r['positions']} | {r['fused_us']:.1f} | {r['plain_us']:.1f} | "
                     f"{r['plain_us'] / r['fused_us']:.2f} | {r['max_abs_difference']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS))
    parser.add_argument("--positions", type=int, nargs="+", default=list(POSITIONS))
    parser.add_argument("--quick", action="store_true", help="few calls (smoke run)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "attention.json")
    args = parser.parse_args(argv)
    if min(args.rows) < 1 or min(args.positions) < 2:
        parser.error("--rows >= 1 and --positions >= 2")
    import onnxruntime as ort
    rounds, calls = (2, 3) if args.quick else (6, 200)
    report = {"onnxruntime": ort.__version__, "date": time.strftime("%Y-%m-%d"), "rounds": rounds, "calls": calls,
              "rows": measure(tuple(args.rows), tuple(args.positions), rounds, calls)}
    save_report(args.out, report, markdown(report))
    return report


if __name__ == "__main__":
    main()
