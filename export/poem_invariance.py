"""Batch invariance of an exported poem model, checked on the graphs themselves and declared in the manifest.

genrt's engine decodes many requests in one decoder call, rows of different lengths side by side. A request's
tokens and scores stay bit-identical to decoding it alone only if every kernel computes a row the same way
whatever else is in the call. Caches and sources are padded to multiples of CACHE_ALIGN for attention; the weight
matrices must be row-independent too: fp32 MatMul is, and so are the int8 per-row products of export.row_int8
(exact integer sums, one activation scale per row) and MatMulNBits with blocks of 32 (other block sizes take
another code path for a lone row). `batch_invariance_problems` decodes rows alone and in mixed batches
(other rows joining mid-way, longer and shorter sources, odd and even row counts) and compares the logits bit for
bit; `declare_batch_invariance` writes the outcome into the manifest (`batch_invariant`).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from genrt.contract import SOS_ID, SPECIAL_TOKENS, read_manifest, write_manifest

STEPS = 20


def _sources(vocab_size: int, count: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[4] + rng.integers(len(SPECIAL_TOKENS), vocab_size, int(rng.integers(1, 24))).tolist()
            for _ in range(count)]


def _alone(model, source: list[int], tokens: np.ndarray) -> np.ndarray:
    """Logits (STEPS, V) of one row fed <sos> then `tokens`, decoded by itself."""
    cache, out = model.start([source]), []
    feed = np.array([[SOS_ID]])
    for t in range(STEPS):
        logits, cache = model.step(feed, cache)
        out.append(logits[0].copy())
        feed = tokens[t:t + 1, None]
    return np.stack(out)


def batch_invariance_problems(model, rows: int = 5, seed: int = 0) -> list[str]:
    """Decode `rows` rows, each joining the batch one step after the previous one (so lengths differ and the row
    count goes 1, 2, 3, ... odd and even), with the first row leaving half-way; compare every row's logits with
    the same row decoded alone. -> what differs (empty: invariant)."""
    vocab = len(model.manifest.vocab)
    sources = _sources(vocab, rows, seed)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(len(SPECIAL_TOKENS), vocab, (rows, STEPS))
    want = [_alone(model, s, tokens[i]) for i, s in enumerate(sources)]
    cache, members, done = None, [], {i: [] for i in range(rows)}
    for step in range(STEPS + rows):
        if step < rows:                                   # one more row joins
            fresh = model.start([sources[step]])
            cache = fresh if cache is None else model.join(cache, fresh)
            members.append(step)
        if not members:
            break
        feed = np.array([[SOS_ID] if len(done[i]) == 0 else [tokens[i, len(done[i]) - 1]] for i in members])
        logits, cache = model.step(feed, cache)
        keep = []
        for r, i in enumerate(members):
            done[i].append(logits[r].copy())
            if len(done[i]) < (STEPS // 2 if i == 0 else STEPS):
                keep.append(r)
        if len(keep) < len(members):                      # finished rows leave
            cache = model.reorder(cache, np.array(keep))
            members = [members[r] for r in keep]
    problems = []
    for i in range(rows):
        got = np.stack(done[i])
        if not np.array_equal(got, want[i][:len(got)]):
            problems.append(f"row {i}: logits differ from decoding it alone by up to "
                        f"{float(np.abs(got - want[i][:len(got)]).max()):.2e}")
    return problems


def declare_batch_invariance(model_dir: str | Path) -> bool:
    """Check the model directory's graphs on the CPU provider and record the outcome in its manifest."""
    from genrt.poems.model import PoemModel
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    try:
        model = PoemModel.load(model_dir, provider="cpu")
    except Exception:
        if manifest.precision != "fp16":
            raise                      # a graph that does not load is a broken export, not a non-invariant one
        invariant = False              # an fp16 model an onnxruntime build cannot run on CPU guarantees nothing here
    else:
        invariant = not batch_invariance_problems(model)
    write_manifest(model_dir, dataclasses.replace(manifest, batch_invariant=invariant))
    return invariant


def main(argv: list[str] | None = None) -> None:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="poem model directory to check")
    args = parser.parse_args(argv)
    from export.model_dir import command_errors
    from genrt.poems.model import PoemModel
    with command_errors("check failed"):
        problems = batch_invariance_problems(PoemModel.load(args.model_dir, provider="cpu"))
    print(json.dumps({"batch_invariant": not problems, "problems": problems}, ensure_ascii=False))


if __name__ == "__main__":
    main()
