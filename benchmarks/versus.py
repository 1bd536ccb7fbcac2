"""genrt against CTranslate2, head to head: the same weights, the same prompt, interleaved rounds.

    python -m benchmarks.versus [--rounds 15] [--threads 1 2] [--beams 1 4] [--batch 1 16]
                                [--out benchmarks/results/versus.json]

Separate-process tables (python -m benchmarks) measure each engine minutes apart; on a shared or throttled machine
that alone moves a ratio by 30 %. Here each engine runs in a worker process of its own (so neither engine's
thread pool spins beside the other's) and the two alternate in blocks (each block re-warms the caches the other
engine evicted and is timed after its first run): greedy and beam search, one prompt or a batch of prompts in one
call (genrt's `generate(list)`, which runs them through its scheduler; CTranslate2's `translate_batch`), exactly 64
new characters per prompt (<eos> held off: genrt's min_new_tokens, CTranslate2's min_decoding_length), the same
suppressed tokens, on the bundled fp32 weights (CTranslate2 gets them through benchmarks.peers and
export.ctranslate2, token-checked against torch) and the bundled int8 directory vs CTranslate2 int8. Reports the
median ms per new token of each engine and their ratio per precision and thread count, with the CPU and its flags.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import save_report
from benchmarks.timing import cpu_info

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "genrt" / "models"
NEW_TOKENS = 64
PROMPT = "春江花月夜"
# a batch takes the first N of these (16 different titles and lengths; repeated beyond 16)
PROMPTS = ("春江花月夜", "秋思", "静夜思", "山居秋暝", "夜泊枫桥", "送别", "江南春", "登高", "春晓", "秋夕",
           "夜雨寄北", "山行", "月下独酌", "黄鹤楼", "长安古意", "塞下曲")


def batch_prompts(batch: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
PAIRS = (("fp32", "poems", "float32"), ("int8", "poems_int8", "int8"))   # precision, bundled dir, CT2 type


def convert(checkpoint: Path, out: Path, quantization: str) -> None:
    cmd = [sys.executable, "-m", "export.ctranslate2", "--checkpoint", str(checkpoint), "--out", str(out),
           "--quantization", quantization, "--check-prompts", "4", "--no-beam-check"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"CTranslate2 conversion failed: {done.stderr.strip()[-1500:]}")


def genrt_runner(model_dir: Path, threads: int, beams: int = 1, batch: int = 1, processes: bool = False):
    """A function decoding the batch once -> characters decoded, in a process whose allocator keeps freed memory
    (genrt.allocator). `processes`: an EnginePool of `threads` engine processes (one lane each) takes the batch
    (EnginePool.generate), instead of this process's lanes; the function then has a `close`."""
    options = dict(do_sample=False, min_new_tokens=NEW_TOKENS, max_new_tokens=NEW_TOKENS, regular_shape=False,
                   max_char_repeats=0, no_repeat_verse=False, repetition_penalty=1.0, num_beams=beams,
                   length_penalty=1.0, idiomatic_doubling=False, max_verse_openings=0, max_title_echoes=0)
    prompts = batch_prompts(batch)
    if processes:
        from genrt.poems.engine_process import EnginePool
        pool = EnginePool.start(dict(model_dir=str(model_dir), provider="cpu", threads=1), processes=threads,
                                max_rows=max(64, batch * beams))

        def run_pool() -> int:
            return sum(len(poems[0].text) for poems in pool.generate(prompts, **options))
        run_pool.close = pool.close                                              # type: ignore[attr-defined]
        return run_pool
    from genrt.allocator import retain_freed_memory
    from genrt.poems.generator import PoemGenerator
    retain_freed_memory()                 # what an app decoding for many callers does (the pool's processes do too)
    gen = PoemGenerator.load(model_dir, provider="cpu", threads=threads)
    opts = gen.options(**options)

    def run() -> int:
        return sum(len(poems[0].text) for poems in gen.generate(prompts, opts))
    return run


def ct2_runner(ct2_dir: Path, compute_type: str, threads: int, beams: int = 1, batch: int = 1,
               parallel: str = "intra"):
    """parallel "intra": one batch on `threads` threads; "inter": the batch split into `threads` parts decoded at
    once, one thread each (CTranslate2's inter_threads with max_batch_size, what genrt's lanes do)."""
    import ctranslate2
    from export.ctranslate2 import decode_options
    from genrt.poems.tokenizer import CharTokenizer
    inter = parallel == "inter"
    translator = ctranslate2.Translator(str(ct2_dir), device="cpu", compute_type=compute_type,
                                        intra_threads=1 if inter else threads, inter_threads=threads if inter else 1)
    vocab = json.loads((ct2_dir / "shared_vocabulary.json").read_text(encoding="utf-8"))
    src = [[vocab[i] for i in CharTokenizer(vocab).encode_prompt(p, "title", 200)] for p in batch_prompts(batch)]
    options = {"beam_size": beams, "length_penalty": 1.0, "min_decoding_length": NEW_TOKENS,
               "max_decoding_length": NEW_TOKENS, **decode_options(vocab)}
    if inter:
        options["max_batch_size"] = -(-batch // threads)

    def run() -> int:
        return sum(len(r.hypotheses[0]) for r in translator.translate_batch(src, **options))
    return run


def _worker(conn, kind: str, args: tuple, options: dict) -> None:
    """One engine in a process of its own (no thread pool of the other engine spinning beside it): builds its
    runner, then answers every "run" with the milliseconds per new token it just took and the tokens decoded."""
    run = genrt_runner(*args, **options) if kind == "genrt" else ct2_runner(*args, **options)
    run()                                                                   # warm-up
    while conn.recv() == "run":
        t0 = time.perf_counter()
        n = run()
        conn.send(((time.perf_counter() - t0) * 1e3 / n, n))
    getattr(run, "close", lambda: None)()


def head_to_head(engines: dict[str, tuple], rounds: int, block: int = 5) -> dict[str, float]:
    """engines: name -> (kind, args[, keyword options]), the args ending with the batch size (every prompt must
    decode exactly NEW_TOKENS). Median ms per new token of each engine, each in its own worker process. Every round
    runs each engine `block` times in a row and keeps all but the first (caches warm again after the other engine,
    as for a user decoding poem after poem), alternating which engine goes first, so both see the same machine
    state."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    workers = {}
    for name, (kind, args, *options) in engines.items():
        parent, child = ctx.Pipe()
        options = options[0] if options else {}
        # an engine pool's worker starts processes of its own, which a daemonic process may not
        proc = ctx.Process(target=_worker, args=(child, kind, args, options), daemon=not options.get("processes"))
        proc.start()
        workers[name] = (parent, proc)
    samples = {name: [] for name in engines}
    names = list(engines)
    try:
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                conn = workers[name][0]
                for i in range(block):
                    conn.send("run")
                    ms, n = conn.recv()
                    want = NEW_TOKENS * engines[name][1][-1]
                    if n != want:
                        raise RuntimeError(f"{name} decoded {n} tokens, not {want}")
                    if i:
                        samples[name].append(ms)
    finally:
        for conn, proc in workers.values():
            conn.send("stop")
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    return {name: float(np.median(s)) for name, s in samples.items()}


def markdown(report: dict) -> str:
    cpu = report["cpu"]
    lines = [f"{cpu['model']} ({', '.join(cpu['flags'])}), {report['rounds']} rounds of {report['block']} runs per "
             f"engine (the first of each block untimed), {NEW_TOKENS} new characters per prompt (batch 1: "
             f"{PROMPT}; batch N: the first N of {', '.join(PROMPTS)}); onnxruntime {report['onnxruntime']}, "
             f"CTranslate2 {report['ctranslate2']}; {report.get('date', '')}.", "",
             "genrt runs a batch in one lane per thread (genrt.decoding.lanes: `generate(list)`), or on several "
             "threads also in an engine pool of one process per thread (`EnginePool.generate`: no interpreter lock "
             "shared between lanes); its processes keep freed memory for reuse (genrt.allocator). CTranslate2 on "
             "several threads runs either all of them inside one batch "
             "(intra_threads) or the batch split into one part per thread, decoded at once (inter_threads with "
             "max_batch_size: \"split\").", "",
             "| precision | threads | prompts per call | search | genrt | genrt ms/token | genrt tokens/s | "
             "CTranslate2 threads | CTranslate2 ms/token | CTranslate2 tokens/s | genrt speed vs CTranslate2 | "
             "genrt speed vs CTranslate2's fastest row (any threads) |",
             "|---|---:|---:|---|---|---:|---:|---|---:|---:|---:|---:|"]
    # CTranslate2's fastest row for the same precision, batch and beams, at any thread count and either way of
    # using its threads: the row each target is judged against (several intra-op threads can be its slowest)
    best: dict = {}
    for r in report["rows"]:
        case = (r["precision"], r.get("batch", 1), r.get("beams", 1))
        best[case] = min(best.get(case, r["ct2_ms"]), r["ct2_ms"])
    for r in report["rows"]:
        lines.append(f"| {r['precision']} | {r['threads']} | {r.get('batch', 1)} | {_search(r.get('beams', 1))} | "
                     f"{r.get('genrt_mode', 'lanes')} | {r['genrt_ms']:.3f} | {1e3 / r['genrt_ms']:,.0f} | "
                     f"{'split' if r.get('ct2_parallel') == 'inter' else 'one batch'} | {r['ct2_ms']:.3f} | "
                     f"{1e3 / r['ct2_ms']:,.0f} | {r['ct2_ms'] / r['genrt_ms']:.2f}x | "
                     f"{best[(r['precision'], r.get('batch', 1), r.get('beams', 1))] / r['genrt_ms']:.2f}x |")
    key = lambda r: (r["precision"], r["threads"], r.get("batch", 1), r.get("ct2_parallel", "intra"),  # noqa: E731
                     r.get("genrt_mode", "lanes"))
    greedy = {key(r): r for r in report["rows"] if r.get("beams", 1) == 1}
    ratios = [f"{r['precision']} {r['threads']} thread{'s' if r['threads'] > 1 else ''} batch {r.get('batch', 1)}: "
              f"genrt{' processes' if r.get('genrt_mode') == 'processes' else ''} "
              f"{r['genrt_ms'] / g['genrt_ms']:.2f}x, CTranslate2"
              f"{' split' if r.get('ct2_parallel') == 'inter' else ''} {r['ct2_ms'] / g['ct2_ms']:.2f}x"
              for r in report["rows"] if r.get("beams", 1) > 1 for g in [greedy.get(key(r))] if g]
    single = {(r["precision"], r["threads"]): r for r in report["rows"]
              if r.get("beams", 1) == 1 and r.get("batch", 1) == 1}
    gains = [f"{r['precision']} {r['threads']} thread{'s' if r['threads'] > 1 else ''}: genrt"
             f"{' processes' if r.get('genrt_mode') == 'processes' else ''} "
             f"{g['genrt_ms'] / r['genrt_ms']:.2f}x, CTranslate2 {g['ct2_ms'] / r['ct2_ms']:.2f}x"
             for r in report["rows"] if r.get("beams", 1) == 1 and r.get("batch", 1) > 1
             and r.get("ct2_parallel", "intra") == "intra"     # a split batch has no single-prompt twin
             for g in [single.get((r["precision"], r["threads"]))] if g]
    if gains:
        lines += ["", "Batch tokens/s against the same engine's single prompt (same rounds): " + "; ".join(gains)
                  + "."]
    if ratios:
        beams = max(r.get("beams", 1) for r in report["rows"])
        lines += ["", f"Beam {beams} per token against the same engine's greedy (same rounds): " + "; ".join(ratios)
                  + "."]
    return "\n".join(lines) + "\n"


def ct2_modes(threads: int, batch: int) -> tuple[str, ...]:
    """CTranslate2's ways to use `threads` on a batch: its threads inside one batch ("intra"), and, for a batch on
    several threads, also the batch split into one part per thread decoded at once ("inter", like genrt's lanes)."""
    return ("intra", "inter") if threads > 1 and batch > 1 else ("intra",)


def genrt_modes(threads: int, batch: int) -> tuple[str, ...]:
    """genrt's ways to use `threads` on a batch: lanes in one process ("lanes", `generate(list)`), and, for a batch on
    several threads, also one engine process per thread ("processes", `EnginePool.generate`), whose lanes share no
    interpreter lock."""
    return ("lanes", "processes") if threads > 1 and batch > 1 else ("lanes",)


def _search(beams: int) -> str:
    return "greedy" if beams == 1 else f"beam {beams}"


def main(argv: list[str] | None = None) -> dict:
    import ctranslate2
    import onnxruntime
    from benchmarks.peers import poems_checkpoint
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--block", type=int, default=5, help="runs per engine per round (the first is not timed)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4],
                        help="beam sizes to run, each against the other engine's same size (1 = greedy)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1],
                        help="prompts per call (genrt generate(list), CTranslate2 translate_batch)")
    parser.add_argument("--precisions", nargs="+", default=[p for p, _, _ in PAIRS], choices=[p for p, _, _ in PAIRS])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "versus.json")
    parser.add_argument("--models", type=Path, default=MODELS,
                        help="folder holding poems/ and poems_int8/ (default: the bundled models), e.g. a re-export "
                             "to compare before bundling; CTranslate2 gets that folder's fp32 weights")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = poems_checkpoint(args.models / "poems", Path(tmp) / "weights.pt")
        for precision, bundled, ct2_type in PAIRS:
            if precision not in args.precisions:
                continue
            ct2_dir = Path(tmp) / ct2_type
            convert(checkpoint, ct2_dir, ct2_type)
            for threads in args.threads:
                engines, cases = {}, [(beams, batch) for batch in args.batch for beams in args.beams]
                for beams, batch in cases:
                    for mode in genrt_modes(threads, batch):
                        engines[f"genrt-{mode}/{beams}/{batch}"] = (
                            "genrt", (args.models / bundled, threads, beams, batch), {"processes": mode == "processes"})
                    for parallel in ct2_modes(threads, batch):
                        engines[f"ct2-{parallel}/{beams}/{batch}"] = (
                            "ct2", (ct2_dir, ct2_type, threads, beams, batch), {"parallel": parallel})
                medians = head_to_head(engines, args.rounds, args.block)
                for beams, batch in cases:
                    for mode in genrt_modes(threads, batch):
                        for parallel in ct2_modes(threads, batch):
                            rows.append({"precision": precision, "threads": threads, "beams": beams, "batch": batch,
                                         "genrt_mode": mode, "genrt_ms": medians[f"genrt-{mode}/{beams}/{batch}"],
                                         "ct2_parallel": parallel, "ct2_ms": medians[f"ct2-{parallel}/{beams}/{batch}"],
                                         "model_dir": bundled if args.models == MODELS else str(args.models / bundled)})
                            print(rows[-1], file=sys.stderr)
    report = {"cpu": cpu_info(), "models": "bundled" if args.models == MODELS else str(args.models),
              "rounds": args.rounds, "block": args.block, "onnxruntime": onnxruntime.__version__,
              "ctranslate2": ctranslate2.__version__, "date": time.strftime("%Y-%m-%d"), "rows": rows}
    save_report(args.out, report, markdown(report))
    return report


if __name__ == "__main__":
    main()
