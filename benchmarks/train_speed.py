"""How fast the poem trainer learns on this machine: fp32 vs bf16 autocast vs torch.compile, target tokens/s.

    python -m benchmarks.train_speed --cache cache/poems [--modes fp32 bf16 compile] [--steps 45] [--threads 2]

Each mode runs in a process of its own (a compiled graph or a thread pool must not leak into the next mode) the
trainer's step on the same real batches (length-bucketed, 4,096 target tokens each, the same seed): forward (the
Transformer of trainers.poems_model, under autocast for bf16/compile), label-smoothed cross-entropy, backward,
AdamW, as trainers.poems.train_step does them (without its lr schedule and gradient clipping, which cost the same
in every mode). Reported: steady-state tokens/s and median seconds per step over the steps after `--warmup`, and
the wall time of the whole run, which is where torch.compile pays for compiling (the first step and every new
batch shape that breaks its guards). Run it with no trainer running: it is a measurement of the machine. Writes
benchmarks/results/train_speed.{json,md}. Needs torch (the train extra).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MODES = ("fp32", "bf16", "compile")


def run_mode(mode: str, cache: str, steps: int, warmup: int, threads: int, seed: int = 5,
             tokens_per_batch: int | None = None) -> dict:
    """Train `steps` steps of a fresh poem model in this process; -> the mode's figures."""
    import torch
    import torch.nn.functional as F

    from trainers.poems import PoemsConfig, PairSet, make_batches
    from trainers.poems_corpus import load_corpus
    from trainers.poems_model import PoemTransformer
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = PoemsConfig()
    arrays, vocab, _ = load_corpus(cache)
    pairs = PairSet(arrays, "train", cfg.max_len)
    batches = make_batches(pairs.tgt_lens, tokens_per_batch or cfg.tokens_per_batch, seed=seed)[:steps]
    model = PoemTransformer(cfg.model_config(len(vocab)))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def loss_of(src, src_mask, tgt_in, tgt_out):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode != "fp32"):
            logits = model(src, src_mask, tgt_in)                                # (B, N, V)
        return F.cross_entropy(logits.float().flatten(0, 1), tgt_out.flatten(), ignore_index=0,
                               label_smoothing=cfg.label_smoothing)

    step_loss = torch.compile(loss_of, dynamic=True) if mode == "compile" else loss_of
    per_step, start = [], time.perf_counter()
    for idx in batches:
        batch = pairs.collate(idx)
        t0 = time.perf_counter()
        loss = step_loss(*batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        per_step.append((time.perf_counter() - t0, int((batch[3] != 0).sum())))
    wall = time.perf_counter() - start
    steady = per_step[warmup:] or per_step
    seconds = sorted(d for d, _ in steady)
    return {"mode": mode, "threads": threads, "steps": len(per_step), "warmup": warmup,
            "steady_tokens_per_s": sum(n for _, n in steady) / sum(d for d, _ in steady),
            "median_s_per_step": seconds[len(seconds) // 2], "first_step_s": per_step[0][0],
            "wall_s": wall, "wall_tokens_per_s": sum(n for _, n in per_step) / wall}


def markdown(report: dict) -> str:
    lines = [f"{report['machine']}; torch {report['torch']}; {report['steps']} steps of 4,096 target tokens on real "
             f"batches, steady state after {report['warmup']} steps.", "",
             "| mode | threads | steady tokens/s | median s/step | first step s | whole run tokens/s | vs fp32 (steady) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    base = {r["threads"]: r["steady_tokens_per_s"] for r in report["rows"] if r["mode"] == "fp32"}
    for r in report["rows"]:
        ratio = f"{r['steady_tokens_per_s'] / base[r['threads']]:.2f}x" if r["threads"] in base else "–"
        lines.append(f"| {r['mode']} | {r['threads']} | {r['steady_tokens_per_s']:.0f} | {r['median_s_per_step']:.2f} | "
                     f"{r['first_step_s']:.1f} | {r['wall_tokens_per_s']:.0f} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="cache/poems")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--steps", type=int, default=45)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_speed.json"))
    parser.add_argument("--one-mode", default=None, help=argparse.SUPPRESS)   # the worker process
    args = parser.parse_args(argv)
    if args.one_mode:
        print(json.dumps(run_mode(args.one_mode, args.cache, args.steps, args.warmup, args.threads)))
        return
    import torch

    from benchmarks.timing import cpu_info
    rows = []
    for mode in args.modes:
        worker = subprocess.run([sys.executable, "-m", "benchmarks.train_speed", "--one-mode", mode, "--cache",
                                 args.cache, "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads",
                                 str(args.threads)], capture_output=True, text=True, check=True)
        rows.append(json.loads(worker.stdout.strip().splitlines()[-1]))
        print(f"{mode}: {rows[-1]['steady_tokens_per_s']:.0f} tokens/s steady, {rows[-1]['wall_s']:.0f} s in all",
              flush=True)
    cpu = cpu_info()
    report = {"machine": f"{cpu['model']} ({', '.join(cpu['flags'])})", "torch": torch.__version__,
              "steps": args.steps, "warmup": args.warmup, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


if __name__ == "__main__":
    main()
