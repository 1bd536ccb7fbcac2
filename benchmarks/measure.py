"""One measurement task per process (clean peak RSS and load time), printing JSON rows on its last line.

    python -m benchmarks.measure faces-onnx --model genrt/models/faces --provider cpu --threads 1
    python -m benchmarks.measure poems-onnx --model genrt/models/poems --provider cpu --threads 2
    python -m benchmarks.measure faces-torch --checkpoint genrt/models/faces --threads 1   # or a training checkpoint
    python -m benchmarks.measure poems-torch --checkpoint runs/poems/checkpoint.pt --threads 1
    python -m benchmarks.measure poems-ct2 --checkpoint runs/poems/checkpoint.pt --threads 1 [--ct2-quantization int8]
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

from benchmarks.timing import peak_rss_mb, time_interleaved, time_ms

FACE_BATCHES = (1, 16, 64, 256)
NEW_TOKENS = 64
LONG_TOKENS = 160   # a long poem: the cache's advantage grows with length
PROMPTS = ["春江花月夜", "山居秋暝", "登高", "静夜思", "送别", "秋思", "江雪", "春望"]



def shown_path(path) -> str:
    """A path as reports show it: relative to the checkout when inside it (no machine's folders in results)."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)

def faces_onnx(model_dir: str, provider: str, threads: int, quick: bool) -> list[dict]:
    from genrt.faces import FaceGenerator
    t0 = time.perf_counter()
    gen = FaceGenerator.load(model_dir, provider=provider, threads=threads)
    load_s = time.perf_counter() - t0
    rows = []
    for n in FACE_BATCHES[:2] if quick else FACE_BATCHES:
        z = gen.latents(n, seed=0)                                             # (n, nz)
        stats = time_ms(lambda: gen.generate_from_latents(z), repeats=3 if quick else max(5, 200 // n))
        rows.append({"model": "faces", "engine": "genrt", "provider": gen.provider, "threads": threads,
                     "precision": gen.manifest.precision, "model_dir": shown_path(model_dir), "n": n, **stats,
                     "images_per_s": n / stats["median_ms"] * 1e3, "load_s": load_s})
    return rows


def faces_torch(source: str, threads: int, quick: bool) -> list[dict]:
    """source: a training checkpoint, or a fp32 faces model directory (its folded generator, benchmarks.peers)."""
    import torch
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    from export.model_dir import portable_paths
    if Path(source).is_dir():
        from benchmarks.peers import folded_faces_generator
        folded, nz = folded_faces_generator(source)
        G = lambda z: folded(z[:, :, 0, 0])                                  # noqa: E731 -- (n, nz, 1, 1) in
        weights = f"{portable_paths(str(source))} (BatchNorm folded)"     # no machine path in the results
    else:
        from trainers.faces import load_generator
        G, cfg, _ = load_generator(source)
        nz, weights = cfg.nz, portable_paths(str(source))
    load_s = time.perf_counter() - t0
    rows = []
    for n in FACE_BATCHES[:2] if quick else FACE_BATCHES:
        z = torch.from_numpy(np.random.default_rng(0).standard_normal((n, nz, 1, 1), dtype=np.float32))

        @torch.inference_mode()
        def run():  # same work as the graph: generator, then uint8 HWC
            return ((G(z) + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        stats = time_ms(run, repeats=3 if quick else max(5, 200 // n))
        rows.append({"model": "faces", "engine": "torch-eager", "provider": "cpu", "threads": threads,
                     "precision": "fp32", "n": n, **stats, "images_per_s": n / stats["median_ms"] * 1e3,
                     "load_s": load_s, "weights": weights})
    return rows


def _poem_sources(tokenizer, batch: int) -> list[list[int]]:
    return [tokenizer.encode_prompt(PROMPTS[i % len(PROMPTS)], "title", 200) for i in range(batch)]


def _decode_cases(model, tokenizer, quick: bool):
    """(name, batch, function decoding exactly NEW_TOKENS per sequence). <eos> is banned so lengths are equal."""
    from genrt.decoding.processors import SuppressTokens, make_sampler
    from genrt.decoding.scheduler import decode
    from genrt.decoding.search import BeamSampling, BeamSearch, SampleSearch
    banned = [SuppressTokens(sorted(tokenizer.control_ids))]
    eos, sos = tokenizer.eos_id, tokenizer.sos_id

    def greedy(batch):
        return _greedy_case(model, tokenizer, NEW_TOKENS, batch)

    def sample(batch):
        src = _poem_sources(tokenizer, batch)
        return lambda: decode(model, src, [
            SampleSearch(np.array([[sos]]), NEW_TOKENS, eos, banned,
                         make_sampler([np.random.default_rng([0, i])], 0.8, 40, 0.95)) for i in range(batch)])

    def beam(batch, k, sampled=False):
        src = _poem_sources(tokenizer, batch)

        def run():                       # sampled: the bundled poem models' recommended --num-beams
            return decode(model, src, [
                BeamSearch(np.full((k, 1), sos), NEW_TOKENS, eos, banned,
                           sampling=BeamSampling(np.random.default_rng(0), 1.0, 40, 0.95) if sampled else None)
                for _ in range(batch)])
        return run

    cases = [("greedy", 1, greedy(1)), ("sample", 1, sample(1)), ("beam4", 1, beam(1, 4)),
             ("beam4-sampled", 1, beam(1, 4, sampled=True))]
    if not quick:
        cases += [("greedy", 8, greedy(8)), ("sample", 8, sample(8)), ("beam8", 1, beam(1, 8)),
                  ("beam4", 8, beam(8, 4))]
    return cases


def _time_to_first_token(model, tokenizer, repeats: int) -> dict:
    from genrt.decoding.processors import pick_greedy
    src = _poem_sources(tokenizer, 1)

    def first():
        logits, _ = model.step(np.ones((1, 1), np.int64), model.start(src))
        return pick_greedy(logits)
    return time_ms(first, repeats)


def poems_onnx(model_dir: str, provider: str, threads: int, quick: bool) -> list[dict]:
    from genrt.poems.model import PoemModel, RecomputeModel
    from genrt.poems.tokenizer import CharTokenizer
    t0 = time.perf_counter()
    model = PoemModel.load(model_dir, provider=provider, threads=threads)
    load_s = time.perf_counter() - t0
    tok = CharTokenizer(model.manifest.vocab)
    base = {"model": "poems", "engine": "genrt", "provider": model.provider, "threads": threads,
            "precision": model.manifest.precision, "model_dir": shown_path(model_dir), "new_tokens": NEW_TOKENS,
            "load_s": load_s}
    repeats = 2 if quick else 7
    cases = _decode_cases(model, tok, quick)
    # the targets' ratios (beam 4 vs greedy, cache vs recompute) from runs that alternate in the same minutes
    paired = {name: fn for name, batch, fn in cases if batch == 1 and name in PAIRED_SEARCHES}
    paired["recompute"] = _greedy_case(RecomputeModel(model), tok, NEW_TOKENS)
    paired_stats = time_interleaved(paired, repeats, warmup=1)
    rows = []
    for name, batch, fn in cases:
        stats = paired_stats[name] if batch == 1 and name in PAIRED_SEARCHES else time_ms(fn, repeats, warmup=1)
        rows.append({**base, "search": name, "batch": batch, "cache": "kv", **_per_token(stats, batch)})
    rows.append({**base, "search": "greedy", "batch": 1, "cache": "recompute",
                 **_per_token(paired_stats["recompute"], 1)})
    if not quick:   # a long poem: the cache's advantage grows with length
        long_cases = {"kv": _greedy_case(model, tok, LONG_TOKENS),
                      "recompute": _greedy_case(RecomputeModel(model), tok, LONG_TOKENS)}
        for cache, stats in time_interleaved(long_cases, repeats, warmup=1).items():
            rows.append({**base, "search": "greedy", "batch": 1, "cache": cache, "new_tokens": LONG_TOKENS,
                         **_per_token(stats, 1, LONG_TOKENS)})
    rows.append({**base, "search": "first-token", "batch": 1, "cache": "kv",
                 **_time_to_first_token(model, tok, 5 if quick else 30)})
    return rows


PAIRED_SEARCHES = ("greedy", "beam4")   # timed alternately with each other and with greedy without the cache


def _greedy_case(model, tok, new_tokens: int, batch: int = 1):
    """Greedy over `batch` prompts, exactly `new_tokens` characters each (<eos> banned), on `model` (PoemModel or
    RecomputeModel)."""
    from genrt.decoding.processors import SuppressTokens, pick_greedy
    from genrt.decoding.scheduler import decode
    from genrt.decoding.search import SampleSearch
    src, banned = _poem_sources(tok, batch), [SuppressTokens(sorted(tok.control_ids))]
    return lambda: decode(model, src, [SampleSearch(np.array([[tok.sos_id]]), new_tokens, tok.eos_id, banned,
                                                    pick_greedy) for _ in range(batch)])


def poems_torch(checkpoint: str, threads: int, quick: bool) -> list[dict]:
    """Plain torch eager greedy loop without a cache (the model re-run over the prefix each step)."""
    import torch
    from export.poems_reference import TorchNoCacheModel
    from genrt.decoding.processors import SuppressTokens
    from genrt.decoding.scheduler import decode_greedy
    from genrt.poems.tokenizer import CharTokenizer
    from trainers.poems import load_model
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model, vocab, _ = load_model(checkpoint)
    load_s = time.perf_counter() - t0
    tok = CharTokenizer(vocab)
    ref = TorchNoCacheModel(model)
    src = _poem_sources(tok, 1)
    stats = time_ms(lambda: decode_greedy(ref, src[0], tok.sos_id, NEW_TOKENS, tok.eos_id,
                                          [SuppressTokens(sorted(tok.control_ids))]), 2 if quick else 5, warmup=1)
    return [{"model": "poems", "engine": "torch-eager", "provider": "cpu", "threads": threads, "precision": "fp32",
             "new_tokens": NEW_TOKENS, "search": "greedy", "batch": 1, "cache": "recompute", "load_s": load_s,
             **_per_token(stats, 1)}]


CT2_PRECISIONS = {"float32": "fp32", "int8": "int8"}   # CTranslate2 quantization -> row precision


def poems_ct2(checkpoint: str, threads: int, quick: bool, quantization: str = "both") -> list[dict]:
    """CTranslate2 (optional `bench` extra) on the same weights: greedy, batch 1, exactly NEW_TOKENS new tokens
    (<eos> held off with min_decoding_length). The checkpoint is converted, and checked against torch, by
    export.ctranslate2 in a child process, so this process's load time and peak RSS are CTranslate2's alone."""
    import ctranslate2
    from export.ctranslate2 import decode_options
    from genrt.poems.tokenizer import CharTokenizer
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for quant in CT2_PRECISIONS if quantization == "both" else [quantization]:
            out = Path(tmp) / quant
            cmd = [sys.executable, "-m", "export.ctranslate2", "--checkpoint", checkpoint, "--out", str(out),
                   "--quantization", quant, "--check-prompts", "4" if quick else "20", "--no-beam-check"]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
            if done.returncode != 0:
                raise RuntimeError(f"ctranslate2 conversion failed: {done.stderr.strip()[-2000:]}")
            t0 = time.perf_counter()
            translator = ctranslate2.Translator(str(out), device="cpu", compute_type=quant, intra_threads=threads,
                                                inter_threads=1)
            load_s = time.perf_counter() - t0
            vocab = json.loads((out / "shared_vocabulary.json").read_text(encoding="utf-8"))
            tok = CharTokenizer(vocab)
            src = [[vocab[i] for i in s] for s in _poem_sources(tok, 1)]
            options = {"beam_size": 1, "min_decoding_length": NEW_TOKENS, "max_decoding_length": NEW_TOKENS,
                       **decode_options(vocab)}
            got = translator.translate_batch(src, **options)[0].hypotheses[0]
            assert len(got) == NEW_TOKENS, f"expected {NEW_TOKENS} tokens, got {len(got)}"
            stats = time_ms(lambda: translator.translate_batch(src, **options), 2 if quick else 5, warmup=1)
            rows.append({"model": "poems", "engine": "ctranslate2", "provider": "cpu", "threads": threads,
                         "precision": CT2_PRECISIONS[quant], "new_tokens": NEW_TOKENS, "search": "greedy",
                         "batch": 1, "cache": "kv", "load_s": load_s, "engine_version": ctranslate2.__version__,
                         **_per_token(stats, 1)})
            del translator
    return rows


def _per_token(stats: dict, batch: int, new_tokens: int = NEW_TOKENS) -> dict:
    """Per generated token: a call makes batch x new_tokens of them (as benchmarks.versus counts)."""
    return {**stats, "ms_per_token": stats["median_ms"] / (batch * new_tokens),
            "tokens_per_s": batch * new_tokens / stats["median_ms"] * 1e3}


TASKS = {"faces-onnx": faces_onnx, "faces-torch": faces_torch, "poems-onnx": poems_onnx, "poems-torch": poems_torch,
         "poems-ct2": poems_ct2}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--model", help="model directory (onnx tasks)")
    parser.add_argument("--checkpoint", help="torch checkpoint (torch tasks)")
    parser.add_argument("--provider", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ct2-quantization", choices=[*CT2_PRECISIONS, "both"], default="both",
                        help="poems-ct2: CTranslate2 weight precision(s) to measure")
    args = parser.parse_args(argv)
    if args.task.endswith("onnx"):
        rows = TASKS[args.task](args.model, args.provider, args.threads, args.quick)
    elif args.task == "poems-ct2":
        rows = poems_ct2(args.checkpoint, args.threads, args.quick, args.ct2_quantization)
    else:
        rows = TASKS[args.task](args.checkpoint, args.threads, args.quick)
    rss = peak_rss_mb()
    print(json.dumps([{**r, "peak_rss_mb": rss} for r in rows]))


if __name__ == "__main__":
    main()
