"""Is the poem model over- or under-fitting? Its NLL per character on training pairs and on validation pairs.

    python -m benchmarks.poem_fit --checkpoint runs/poems/checkpoint.pt --cache cache/poems [--batches 40]

Both splits are scored the same way the trainer scores validation (trainers.poems.evaluate: eval mode, so no
dropout, fp32, no label smoothing) on the first `--batches` length-bucketed batches of seed 0 (for validation, the
very batches the trainer reports). Training NLL well below validation NLL means the model memorises (more epochs or
less regularisation would hurt); training NLL at or above validation NLL means it underfits (dropout only slows it
down). Needs torch (the train extra). Prints one JSON object (`--out F` also appends it to F, one line per run).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def fit_report(checkpoint: str, cache: str, batches: int = 40, threads: int = 1,
               temperatures: tuple[float, ...] = ()) -> dict:
    """-> {"step", "train": evaluate(...) on training pairs, "val": the same on validation pairs, "gap": val nll -
    train nll} (gap > 0: validation is harder than what the model has seen). With `temperatures`, each split also
    gets "nll_at_temperature": {T: NLL with logits / T} (what export.poems --calibrate would make of the model)."""
    import torch

    from trainers.poems import PairSet, evaluate, first_batches, load_model, saved_tokens_per_batch
    from trainers.poems_corpus import load_corpus
    torch.set_num_threads(threads)
    model, vocab, state = load_model(checkpoint)
    arrays, corpus_vocab, _ = load_corpus(cache)
    if list(corpus_vocab) != list(vocab):
        raise SystemExit(f"{checkpoint} was trained on another vocabulary than the corpus in {cache}")
    report = {"checkpoint": str(checkpoint), "step": state.get("step"), "batches": batches}
    for split in ("train", "val"):
        pairs = PairSet(arrays, split, model.config.max_len)
        chosen = first_batches(pairs, saved_tokens_per_batch(state), batches)
        report[split] = evaluate(model, pairs, chosen, torch.device("cpu"))
        if temperatures:
            from trainers.poems_calibration import nll_at_temperatures
            report[split]["nll_at_temperature"] = nll_at_temperatures(model, pairs, chosen, temperatures)
    report["gap"] = report["val"]["nll"] - report["train"]["nll"]
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--cache", required=True, help="the corpus cache the model was trained on")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also append the report to this JSON-lines file")
    parser.add_argument("--temperatures", type=float, nargs="*", default=[],
                        help="also the NLL with logits / T for these T (e.g. the one export.poems --calibrate fits)")
    args = parser.parse_args(argv)
    report = fit_report(args.checkpoint, args.cache, args.batches, args.threads, tuple(args.temperatures))
    print(json.dumps(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(report) + "\n")
    return report


if __name__ == "__main__":
    main()
