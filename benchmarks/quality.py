"""Quality gates of low-precision variants against fp32, on the same inputs.

    python -m benchmarks.quality --faces genrt/models/faces genrt/models/faces_int8 \
                                 --poems genrt/models/poems genrt/models/poems_int8 --corpus cache/poems

Faces: mean absolute pixel difference on the same latents, and a Fréchet distance between feature statistics
(8x8 RGB thumbnails, 192-d) of the fp32 and variant images, next to the Fréchet distance between two fp32 sets
drawn from different latents (the sampling-noise floor). Gate: variant-vs-fp32 distance <= the noise floor.
Poems: validation perplexity through the ONNX decoder with its KV cache (gate: within 2% of fp32), and the share
of prompts whose greedy output is identical.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from genrt.contract import NEVER_GENERATED_SPECIAL_IDS

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- faces

def thumbnail_features(images: np.ndarray) -> np.ndarray:
    """(N, 64, 64, 3) uint8 -> (N, 192) float64 mean-pooled 8x8 RGB thumbnails in [0, 1]."""
    n, h, w, c = images.shape
    return images.reshape(n, 8, h // 8, 8, w // 8, c).mean(axis=(2, 4)).reshape(n, -1) / 255.0


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # trace of sqrtm(cov_a @ cov_b) from the eigenvalues of sqrt(cov_a) cov_b sqrt(cov_a) (symmetric, PSD)
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                 - 2 * np.sqrt(np.clip(middle, 0, None)).sum())


def faces_quality(reference_dir: str, variant_dir: str, n: int = 1024) -> dict:
    from genrt.faces import FaceGenerator
    ref = FaceGenerator.load(reference_dir, provider="cpu")
    var = FaceGenerator.load(variant_dir, provider="cpu")
    z = ref.latents(n, seed=0)
    a, b = ref.generate_from_latents(z), var.generate_from_latents(z)                # (N, 64, 64, 3)
    other = ref.generate(n, seed=1)
    fa, fb, fo = thumbnail_features(a), thumbnail_features(b), thumbnail_features(other)
    noise_floor = frechet_distance(fa, fo)
    distance = frechet_distance(fa, fb)
    return {"model": "faces", "reference": reference_dir, "variant": variant_dir,
            "precision": var.manifest.precision, "images": n,
            "mean_abs_pixel_diff": float(np.abs(a.astype(np.int16) - b).mean()),
            "max_abs_pixel_diff": int(np.abs(a.astype(np.int16) - b).max()),
            "frechet_vs_fp32": distance, "frechet_fp32_noise_floor": noise_floor,
            "passes": distance <= noise_floor}


# ---------------------------------------------------------------- poems

def validation_pairs(corpus: str, count: int) -> tuple[list[list[int]], list[list[int]], list[str]]:
    """First `count` validation pairs of the cached corpus (every pair for count <= 0; ids in the corpus vocab)
    and that vocab."""
    from trainers.poems_corpus import load_corpus
    arrays, vocab, _ = load_corpus(corpus)
    src, so, tgt, to = (arrays[k] for k in ("val_src", "val_src_offsets", "val_tgt", "val_tgt_offsets"))
    n = len(so) - 1 if count <= 0 else min(count, len(so) - 1)
    return ([src[so[i]:so[i + 1]].tolist() for i in range(n)], [tgt[to[i]:to[i + 1]].tolist() for i in range(n)],
            vocab)


def sequence_nll(model, sources: list[list[int]], targets: list[list[int]], batch: int = 16) -> tuple[float, int]:
    """Total NLL (nats) and token count of targets + <eos>, teacher-forced through the KV-cache decoder."""
    from genrt.decoding.processors import log_softmax
    m = model.manifest
    total, count = 0.0, 0
    for start in range(0, len(sources), batch):
        src, tgt = sources[start:start + batch], targets[start:start + batch]
        gold = [t[:m.max_len - 1] + [m.eos_id] for t in tgt]
        width = max(map(len, gold))
        gold_ids = np.full((len(gold), width), m.pad_id, np.int64)
        for i, g in enumerate(gold):
            gold_ids[i, :len(g)] = g
        cache, tokens = model.start(src), np.full((len(gold), 1), m.sos_id, np.int64)
        for pos in range(width):
            logits, cache = model.step(tokens, cache)                                 # (B, V)
            lp = log_softmax(logits.astype(np.float64))
            live = gold_ids[:, pos] != m.pad_id
            total -= float(lp[np.arange(len(gold)), gold_ids[:, pos]][live].sum())
            count += int(live.sum())
            tokens = gold_ids[:, pos:pos + 1]
    return total, count


def poems_quality(reference_dir: str, variant_dir: str, corpus: str, count: int = 0, greedy_count: int = 200
                  ) -> dict:
    """Validation perplexity of both models on the first `count` validation pairs (all for 0), and the share of
    the first `greedy_count` prompts whose greedy poems are identical."""
    from genrt.poems.model import PoemModel
    from genrt.decoding.processors import SuppressTokens
    from genrt.decoding.scheduler import decode_greedy
    ref, var = PoemModel.load(reference_dir, provider="cpu"), PoemModel.load(variant_dir, provider="cpu")
    sources, targets, vocab = validation_pairs(corpus, count)
    if tuple(vocab) != ref.manifest.vocab:
        raise SystemExit(f"corpus {corpus} has another vocab than the model: rebuild it or pass the right one")
    ppl = {}
    for name, model in (("fp32", ref), ("variant", var)):
        nll, tokens = sequence_nll(model, sources, targets)
        ppl[name] = math.exp(nll / tokens)
    greedy_sources = sources[:greedy_count]
    suppress = [SuppressTokens(NEVER_GENERATED_SPECIAL_IDS)]
    same = 0
    for src in greedy_sources:
        outs = [decode_greedy(m, src, m.manifest.sos_id, 64, m.manifest.eos_id, suppress).tokens for m in (ref, var)]
        same += outs[0] == outs[1]
    return {"model": "poems", "reference": reference_dir, "variant": variant_dir,
            "precision": var.manifest.precision, "validation_pairs": len(sources), "validation_tokens": tokens,
            "ppl_fp32": ppl["fp32"], "ppl_variant": ppl["variant"], "ppl_change": ppl["variant"] / ppl["fp32"] - 1,
            "greedy_prompts": len(greedy_sources), "greedy_identical": same / len(greedy_sources),
            "passes": ppl["variant"] <= 1.02 * ppl["fp32"]}


def write_report(results: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    lines = ["| model | variant | measure | value | gate | passes |", "|---|---|---|---|---|---|"]
    for r in results:
        if r["model"] == "faces":
            lines.append(f"| faces | {r['precision']} | mean abs pixel diff (0-255) on {r['images']} latents | "
                         f"{r['mean_abs_pixel_diff']:.2f} (max {r['max_abs_pixel_diff']}) | report | |")
            lines.append(f"| faces | {r['precision']} | Fréchet distance to fp32 (thumbnail features) | "
                         f"{r['frechet_vs_fp32']:.4f} | <= fp32 noise floor {r['frechet_fp32_noise_floor']:.4f} | "
                         f"{'yes' if r['passes'] else 'no'} |")
        else:
            lines.append(f"| poems | {r['precision']} | validation perplexity ({r['validation_pairs']:,} pairs, "
                         f"{r['validation_tokens']:,} tokens, <eos> included) | {r['ppl_variant']:.2f} vs fp32 "
                         f"{r['ppl_fp32']:.2f} ({r['ppl_change']:+.2%}) | within 2% | "
                         f"{'yes' if r['passes'] else 'no'} |")
            lines.append(f"| poems | {r['precision']} | identical greedy outputs ({r['greedy_prompts']} prompts) | "
                         f"{r['greedy_identical']:.1%} | report | |")
    (out / "quality.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", nargs=2, metavar=("FP32_DIR", "VARIANT_DIR"))
    parser.add_argument("--poems", nargs=2, metavar=("FP32_DIR", "VARIANT_DIR"))
    parser.add_argument("--corpus", default=str(ROOT / "cache" / "poems"), help="cached corpus (trainers.poems_corpus)")
    parser.add_argument("--pairs", type=int, default=0, help="validation pairs for perplexity (0 = all)")
    parser.add_argument("--greedy-pairs", type=int, default=200, help="prompts for the identical-greedy share")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    results = []
    if args.faces:
        results.append(faces_quality(*args.faces))
    if args.poems:
        results.append(poems_quality(*args.poems, corpus=args.corpus, count=args.pairs,
                                     greedy_count=args.greedy_pairs))
    write_report(results, args.out)
    print((args.out / "quality.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
