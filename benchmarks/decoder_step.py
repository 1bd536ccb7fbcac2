"""Whole decoder steps of two poem model directories on the same recorded steps, timed interleaved.

    python -m benchmarks.decoder_step --models A B [--rows 1 4 8 16 32 64] [--positions 16 48 80] [--quick]

A change to the decoder graph is measured where it acts: inside the whole step, with the weights, every layer and a
cache of its real size, not as a node on its own (benchmarks.attention times one self-attention node in isolation;
inside the step its cost was several times larger). For each rows x positions, model A decodes that many prompts
greedily up to that step, and the step's feeds are recorded: the real cache, masks and sources. Both decoders then
run that step on one onnxruntime thread. Their logits are compared, and the calls are timed interleaved: the median
of rounds, each of `calls` calls, alternating which model goes first. The two directories may differ in
`cache_outputs` (the feeds are the same). Writes benchmarks/results/decoder_step.{json,md}.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.report import save_report
from benchmarks.timing import cpu_info

ROOT = Path(__file__).resolve().parents[1]
ROWS = (1, 4, 8, 16, 32, 64)
POSITIONS = (16, 48, 80)


def recorded_step(model, sources: list[list[int]], positions: int) -> dict:
    """The feeds of `model`'s decoder call at `positions` cached positions, its own greedy tokens before."""
    seen: list[dict] = []
    run = model._run_decoder

    def recording(outputs, feeds):
        seen.append({k: v.copy() for k, v in feeds.items()})
        return run(outputs, feeds)
    model._run_decoder = recording
    try:
        cache, tokens = model.start(sources), np.full((len(sources), 1), model.manifest.sos_id, np.int64)
        for _ in range(positions + 1):
            logits, cache = model.step(tokens, cache)
            tokens = logits.argmax(1)[:, None]
    finally:
        model._run_decoder = run
    return seen[positions]


def measure(dirs: tuple[Path, Path], rows: tuple[int, ...], positions: tuple[int, ...], rounds: int,
            calls: int) -> list[dict]:
    from benchmarks.versus import batch_prompts
    from genrt.poems.generator import PoemGenerator
    gens = [PoemGenerator.load(d, provider="cpu", threads=1) for d in dirs]
    models = [g.model for g in gens]
    out = []
    for n in rows:
        opts = gens[0].options()
        sources = [r.source for r in gens[0].requests(batch_prompts(n), opts)]
        for t in positions:
            feeds = recorded_step(models[0], sources, t)
            results = [m.decoder.run(m._decoder_outputs, feeds)[0] for m in models]
            times: list[list[float]] = [[], []]
            for r in range(rounds):                     # interleaved, alternating which goes first
                for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                    m = models[i]
                    m.decoder.run(m._decoder_outputs, feeds)
                    start = time.perf_counter()
                    for _ in range(calls):
                        m.decoder.run(m._decoder_outputs, feeds)
                    times[i].append((time.perf_counter() - start) / calls * 1e6)
            out.append({"rows": n, "positions": t, "a_us": float(np.median(times[0])),
                        "b_us": float(np.median(times[1])),
                        "logits_identical": bool(np.array_equal(results[0], results[1])),
                        "max_abs_difference": float(np.abs(results[0] - results[1]).max())})
    return out


def markdown(report: dict) -> str:
    a, b = (f"`{m['name']}`, cache_outputs {m['cache_outputs']}" for m in report["models"])
    lines = [f"Whole decoder steps, A = {a}, B = {b}: the same recorded greedy step of the prompts, "
             f"onnxruntime {report['onnxruntime']}, 1 thread, median µs per call over "
             f"{report['rounds']} interleaved rounds of {report['calls']} calls; {report['machine']}; "
             f"{report['date']}.", "",
             "| rows | cached positions | A µs | B µs | B / A | logits |", "|---:|---:|---:|---:|---:|---|"]
    for r in report["rows"]:
        same = "identical" if r["logits_identical"] else f"differ by {r['max_abs_difference']:.1e}"
        lines.append(f"| {r['rows']} | {r['positions']} | {r['a_us']:.0f} | {r['b_us']:.0f} | "
                     f"{r['b_us'] / r['a_us']:.2f} | {same} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, nargs=2, required=True, metavar=("A", "B"),
                        help="two poem model directories with the same vocabulary")
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS))
    parser.add_argument("--positions", type=int, nargs="+", default=list(POSITIONS))
    parser.add_argument("--quick", action="store_true", help="few calls (smoke run)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "decoder_step.json")
    args = parser.parse_args(argv)
    if min(args.rows) < 1 or min(args.positions) < 0:
        parser.error("--rows >= 1 and --positions >= 0")
    import onnxruntime as ort
    rounds, calls = (2, 2) if args.quick else (8, 40)
    from genrt.contract import read_manifest
    models = [{"name": m.name, "cache_outputs": read_manifest(m).cache_outputs} for m in args.models]
    report = {"models": models, "onnxruntime": ort.__version__,
              "machine": cpu_info().get("model") or "CPU", "date": time.strftime("%Y-%m-%d"),
              "rounds": rounds, "calls": calls,
              "rows": measure(tuple(args.models), tuple(args.rows), tuple(args.positions), rounds, calls)}
    save_report(args.out, report, markdown(report))
    return report


if __name__ == "__main__":
    main()
