"""What a reader gets from each decoding mode, on validation titles the model never trained on.

    python -m benchmarks.poem_decoding --cache cache/poems --titles 200 [--model DIR] [--out FILE.json]

The cache is the corpus `python -m trainers.poems_corpus` builds: its validation pairs give the titles (title
mode, no form token) and its training targets give the verses a poem could copy. For each candidate setting it
reports: regular-form share (a 绝句 or 律诗 shape, no --form asked), poems with a repeated verse, verses with one
character >= 3 times, distinct-1/2 over all poems, verses copied verbatim from the training set, the model's
mean NLL per character of its own output (PoemGenerator.score: teacher-forced, <eos> included; the real poems'
row is the model's validation NLL on them), and seconds per poem; plus a few examples. "defaults" rows use what the model
directory recommends (manifest `generation`), the others override it.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from genrt.contract import PROMPT_TITLE, VERSE_BREAKS
from genrt.poems.forms import FORMS, well_formed
from genrt.poems.tokenizer import CharTokenizer

OFF = dict(do_sample=False, repetition_penalty=1.0, max_char_repeats=0, no_repeat_verse=False, regular_shape=False)
RULES = dict(max_char_repeats=2, no_repeat_verse=True, regular_shape=True)

# name -> generate() keyword arguments; "defaults" rows add nothing to what the model directory recommends; the
# others name do_sample, so none of the recommended sampling settings leaks into them
REP = dict(repetition_penalty=1.2)
SAMPLE = dict(do_sample=True, temperature=0.8, top_k=40, top_p=0.95)
CANDIDATES: dict[str, dict[str, Any]] = {
    "greedy, no repetition control": dict(OFF),
    "greedy, repetition_penalty 1.2": dict(OFF, **REP),
    "greedy, verse rules + shape": dict(RULES, do_sample=False, repetition_penalty=1.0),
    "greedy, verse rules + shape + repetition_penalty 1.2": dict(RULES, **REP, do_sample=False),
    "greedy, verse rules + shape + repetition_penalty 1.3": dict(RULES, do_sample=False, repetition_penalty=1.3),
    "greedy, verse rules + shape + repetition_penalty 1.2 + no_repeat_ngram 2": dict(RULES, **REP, do_sample=False,
                                                                                      no_repeat_ngram_size=2),
    "beam 4, no repetition control": dict(OFF, num_beams=4),
    "beam 4, verse rules + shape": dict(RULES, repetition_penalty=1.0, num_beams=4, do_sample=False),
    "beam 4, verse rules + shape + repetition_penalty 1.2": dict(RULES, **REP, num_beams=4, do_sample=False),
    "beam 4, verse rules + shape + repetition_penalty 1.2 + no_repeat_ngram 2": dict(
        RULES, **REP, num_beams=4, do_sample=False, no_repeat_ngram_size=2),
    "beam 4 sampled (t 0.8, top-k 40, top-p 0.95) + verse rules + shape": dict(
        RULES, num_beams=4, do_sample=True, temperature=0.8, top_k=40, top_p=0.95, repetition_penalty=1.0),
    "beam 4 sampled (t 1.0, top-k 40, top-p 0.95) + verse rules + shape": dict(
        RULES, num_beams=4, do_sample=True, temperature=1.0, top_k=40, top_p=0.95, repetition_penalty=1.0),
    "beam 4 sampled (t 1.0, top-k 40, top-p 0.95) + verse rules + shape + repetition_penalty 1.2": dict(
        RULES, **REP, num_beams=4, do_sample=True, temperature=1.0, top_k=40, top_p=0.95),
    "beam 4 sampled (t 1.5, top-k 40, top-p 0.95) + verse rules + shape": dict(
        RULES, num_beams=4, do_sample=True, temperature=1.5, top_k=40, top_p=0.95, repetition_penalty=1.0),
    "sample, whole vocabulary, no control": dict(OFF, do_sample=True, temperature=1.0, top_k=0, top_p=1.0),
    "sample, t 0.8 top-k 40 top-p 0.95, no control": dict(OFF, **SAMPLE),
    "sample, t 0.8 top-k 40 top-p 0.95 + verse rules + shape": dict(RULES, **SAMPLE, repetition_penalty=1.0),
    "sample, t 0.8 top-k 40 top-p 0.95 + verse rules + shape + repetition_penalty 1.1": dict(
        RULES, **SAMPLE, repetition_penalty=1.1),
    "best of 8 sampled (t 0.7) + verse rules + shape + repetition_penalty 1.1": dict(
        RULES, do_sample=True, temperature=0.7, top_k=40, top_p=0.95, best_of=8, repetition_penalty=1.1),
    "sample, t 0.9 top-k 40 top-p 0.95 + verse rules + shape": dict(RULES, do_sample=True, temperature=0.9,
                                                                     top_k=40, top_p=0.95, repetition_penalty=1.0),
    "sample, t 1.0 top-k 40 top-p 0.95 + verse rules + shape": dict(RULES, do_sample=True, temperature=1.0,
                                                                     top_k=40, top_p=0.95, repetition_penalty=1.0),
    "sample, t 0.9 top-k 100 top-p 0.95 + verse rules + shape": dict(RULES, do_sample=True, temperature=0.9,
                                                                      top_k=100, top_p=0.95, repetition_penalty=1.0),
    "best of 4 sampled (t 0.8) + verse rules + shape": dict(RULES, do_sample=True, temperature=0.8, top_k=40,
                                                            top_p=0.95, best_of=4, repetition_penalty=1.0),
    "best of 8 sampled (t 0.8) + verse rules + shape": dict(RULES, do_sample=True, temperature=0.8, top_k=40,
                                                            top_p=0.95, best_of=8, repetition_penalty=1.0),
    # a model exported with --calibrate has its logits divided by T < 1 (sharper): sampling at t on it is sampling
    # at t * T on the uncalibrated model, so these rows try the settings above at about t / T
    "sample, t 1.0 top-k 100 top-p 0.95 + verse rules + shape": dict(RULES, do_sample=True, temperature=1.0,
                                                                      top_k=100, top_p=0.95, repetition_penalty=1.0),
    "best of 4 sampled (t 0.9) + verse rules + shape": dict(RULES, do_sample=True, temperature=0.9, top_k=40,
                                                            top_p=0.95, best_of=4, repetition_penalty=1.0),
    "beam 4 sampled (t 1.1, top-k 40, top-p 0.95) + verse rules + shape + repetition_penalty 1.2": dict(
        RULES, **REP, num_beams=4, do_sample=True, temperature=1.1, top_k=40, top_p=0.95),
    "defaults (no options)": {},
    "defaults --num-beams 4": dict(num_beams=4),
    "defaults --do-sample": dict(do_sample=True),
    "defaults --greedy": dict(do_sample=False),
    "defaults --num-beams 4 --greedy": dict(num_beams=4, do_sample=False),
}


def verses(text: str) -> list[str]:
    out, current = [], []
    for ch in text:
        if ch in VERSE_BREAKS:
            if current:
                out.append("".join(current))
            current = []
        else:
            current.append(ch)
    if current:
        out.append("".join(current))
    return out


def is_regular(text: str) -> bool:
    return any(well_formed(text, spec.name) for spec in FORMS.values())


def distinct(poems: list[str], n: int) -> float:
    grams = [tuple(v[i:i + n]) for p in poems for v in verses(p) for i in range(len(v) - n + 1)]
    return len(set(grams)) / max(1, len(grams))


def poem_stats(poems: list[str], train_verses: set[str]) -> dict[str, float]:
    all_verses = [v for p in poems for v in verses(p)]
    repeated = sum(len(verses(p)) != len(set(verses(p))) for p in poems)
    heavy = sum(max(v.count(c) for c in set(v)) >= 3 for v in all_verses if v)
    copied = sum(v in train_verses for v in all_verses)
    return {"poems": len(poems), "regular_form": sum(map(is_regular, poems)) / len(poems),
            "repeated_verse_poems": repeated / len(poems), "verses_char_3x": heavy / max(1, len(all_verses)),
            "distinct_1": distinct(poems, 1), "distinct_2": distinct(poems, 2),
            "copied_verses": copied / max(1, len(all_verses))}


def load_split(cache: Path, count: int, seed: int) -> tuple[list[str], list[str], set[str]]:
    """-> `count` distinct validation titles (title-mode sources), the real poem of each, and the set of
    training verses."""
    with np.load(cache / "corpus.npz") as z:
        arrays = {k: z[k] for k in ("val_src", "val_src_offsets", "val_tgt", "val_tgt_offsets", "train_tgt")}
    vocab = json.loads((cache / "vocab.json").read_text(encoding="utf-8"))
    title_id = vocab.index(PROMPT_TITLE)
    src, off = arrays["val_src"], arrays["val_src_offsets"]
    tgt, tgt_off = arrays["val_tgt"], arrays["val_tgt_offsets"]
    pairs: dict[str, str] = {}
    for i in range(len(off) - 1):
        ids = src[off[i]:off[i + 1]]
        if ids[0] == title_id and len(ids) > 1 and all(vocab[j][0] != "<" for j in ids[1:]):
            title = "".join(vocab[j] for j in ids[1:])
            pairs.setdefault(title, "".join(vocab[j] for j in tgt[tgt_off[i]:tgt_off[i + 1]]))
    titles = list(pairs)
    rng = np.random.default_rng(seed)
    titles = [titles[i] for i in rng.permutation(len(titles))[:count]]
    control = CharTokenizer(vocab).control_ids
    text = "".join("。" if j in control else vocab[j] for j in arrays["train_tgt"])   # control ids split verses too
    return titles, [pairs[t] for t in titles], set(verses(text))


def mean_nll(generator, titles: list[str], texts: list[str]) -> float | None:
    """Mean over poems of the model's NLL per token (<eos> included) of each text, via PoemGenerator.score."""
    pairs = [(t, x) for t, x in zip(titles, texts) if x.strip() and not generator.tokenizer.unknown_chars(x)
             and len(x) < generator.manifest.max_len]
    if not pairs:
        return None
    return float(np.mean([s.nll_per_char for s in generator.score([t for t, _ in pairs], [x for _, x in pairs])]))


def run_candidate(generator, titles: list[str], kwargs: dict, seed: int, batch: int) -> tuple[list, float]:
    poems, t0 = [], time.perf_counter()
    for start in range(0, len(titles), batch):
        chunk = titles[start:start + batch]
        extra = dict(seed=seed) if kwargs.get("do_sample") else {}
        poems += [p[0] for p in generator.generate(chunk, **kwargs, **extra)]
    return poems, (time.perf_counter() - t0) / len(titles)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("cache/poems"))
    parser.add_argument("--model", default=None, help="poem model directory [default: bundled, CPU default]")
    parser.add_argument("--titles", type=int, default=200)
    parser.add_argument("--batch", type=int, default=25, help="prompts per generate() call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, help="candidate names to run (substring match)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/poem_decoding.json"))
    args = parser.parse_args(argv)
    from genrt.poems.generator import PoemGenerator
    generator = PoemGenerator.load(args.model, provider="cpu", threads=1)
    titles, real, train_verses = load_split(args.cache, args.titles, args.seed)
    rows = [{"candidate": "real poems of the same titles", "options": None, **poem_stats(real, train_verses),
             "nll_per_char": mean_nll(generator, titles, real), "seconds_per_poem": 0.0,
             "examples": [f"{t}: {p}" for t, p in zip(titles[:4], real[:4])]}]
    for name, kwargs in CANDIDATES.items():
        if args.only and not any(s in name for s in args.only):
            continue
        poems, seconds = run_candidate(generator, titles, kwargs, args.seed, args.batch)
        texts = [p.text for p in poems]
        row = {"candidate": name, "options": kwargs, **poem_stats(texts, train_verses),
               "nll_per_char": mean_nll(generator, titles, texts), "seconds_per_poem": seconds,
               "examples": [f"{p.prompt}: {p.text}" for p in poems[:4]]}
        rows.append(row)
        print(f"{name}: form {row['regular_form']:.0%} repeated {row['repeated_verse_poems']:.1%} "
              f"char3x {row['verses_char_3x']:.1%} d2 {row['distinct_2']:.2f} copied {row['copied_verses']:.1%} "
              f"nll {row['nll_per_char']} {seconds * 1000:.0f} ms/poem", flush=True)
    report = {"model": str(generator.model.model_dir), "precision": generator.manifest.precision,
              "titles": len(titles), "seed": args.seed, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


def markdown(report: dict) -> str:
    lines = [f"Model {report['model']} ({report['precision']}), {report['titles']} validation titles, seed "
             f"{report['seed']}.", "",
             "| decoding | regular form | poems with a repeated verse | verses with a char ≥ 3× | distinct-1 | "
             "distinct-2 | copied verses | NLL/char | ms/poem |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        nll = f"{r['nll_per_char']:.2f}" if r["nll_per_char"] is not None else "–"
        lines.append(f"| {r['candidate']} | {r['regular_form']:.1%} | {r['repeated_verse_poems']:.1%} | "
                     f"{r['verses_char_3x']:.1%} | {r['distinct_1']:.2f} | {r['distinct_2']:.2f} | "
                     f"{r['copied_verses']:.1%} | {nll} | {r['seconds_per_poem'] * 1000:.0f} |")
    lines += ["", "Examples (first titles):", ""]
    for r in report["rows"]:
        lines.append(f"- {r['candidate']}: " + " / ".join(r["examples"][:2]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
