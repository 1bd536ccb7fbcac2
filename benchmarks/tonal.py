"""平仄 and 平水韵: the checker on real poems, free vs --tonal generation, its NLL and its cost per step.

    python -m benchmarks.tonal --cache cache/poems --titles 100 [--model DIR] [--out FILE.json]

1. The checker on the validation poems of each form (poems the model never trained on, in the corpus's
   simplified characters): how many real 绝句/律诗 follow a tonal pattern, how many rhyme in 平水韵, and the
   share of their characters the table has a reading for. A check of the checker: real regulated verse passes
   often, but not always (拗救, licensed deviations, and old poems that predate the rules).
2. Generation on validation titles, per form: `--form F` vs `--form F --tonal` with the model's recommended
   settings (no options: best of 4 sampled; --num-beams 4: beam sampling; and best-first beams, --num-beams 4
   --greedy): share following a tonal pattern, share rhyming
   in 平水韵, the model's NLL per character of its own output (PoemGenerator.score, title source), which
   patterns occur, examples with their marks.
3. Cost: greedy, batch 1, `--form F` vs `--form F --tonal`, the same titles interleaved, best of 5: ms per new
   token; and the tonal processor alone, replayed over those poems, as a share of the step. Run it on an
   otherwise idle machine (`--only-timing` skips parts 1 and 2; `--skip-timing` keeps part 3 of the report already
   at --out).
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.poem_decoding import load_split
from genrt.poems.verse.forms import FORMS, well_formed
from genrt.poems.verse.pingshui import PingshuiTable
from genrt.poems.tokenizer import CharTokenizer
from genrt.poems.verse.tonal import matching_patterns, pingshui_rhyme_problem, tonal_problem

SEARCHES = {"defaults (no options)": {}, "defaults --num-beams 4": {"num_beams": 4},
            "--num-beams 4 --greedy (best-first)": {"num_beams": 4, "do_sample": False}}


def validation_poems(cache: Path) -> list[str]:
    with np.load(cache / "corpus.npz") as z:
        tgt, off = z["val_tgt"], z["val_tgt_offsets"]
    vocab = json.loads((cache / "vocab.json").read_text(encoding="utf-8"))
    control = CharTokenizer(vocab).control_ids
    poems = {"".join(vocab[j] for j in tgt[off[i]:off[i + 1]] if j not in control) for i in range(len(off) - 1)}
    return sorted(poems)


def check_real(poems: list[str]) -> list[dict]:
    table, rows = PingshuiTable.load(), []
    for form in FORMS:
        shaped = [p for p in poems if well_formed(p, form)]
        chars = [ch for p in shaped for ch in p if ch not in "，。"]
        patterns = Counter(name for p in shaped for name in matching_patterns(p, form)[:1])
        rows.append({"form": form, "poems": len(shaped),
                     "tonal": float(np.mean([tonal_problem(p, form) is None for p in shaped])),
                     "pingshui_rhyme": float(np.mean([pingshui_rhyme_problem(p, form) is None for p in shaped])),
                     "char_coverage": table.coverage(chars), "patterns": dict(patterns.most_common())})
    return rows


def generate_rows(generator, titles: list[str], batch: int) -> tuple[list[dict], list[dict]]:
    table, rows, examples = PingshuiTable.load(), [], []
    for form in FORMS:
        for search, kwargs in SEARCHES.items():
            for tonal in (False, True):
                texts, t0 = [], time.perf_counter()
                for i in range(0, len(titles), batch):
                    out = generator.generate(titles[i:i + batch], form=form, tonal=tonal, **kwargs)
                    texts += [per[0].text for per in out]
                seconds = (time.perf_counter() - t0) / len(titles)
                scores = generator.score(titles, texts)
                rows.append({
                    "form": form, "search": search, "tonal": tonal, "poems": len(texts),
                    "shape": float(np.mean([well_formed(t, form) for t in texts])),
                    "follows_pattern": float(np.mean([tonal_problem(t, form) is None for t in texts])),
                    "pingshui_rhyme": float(np.mean([pingshui_rhyme_problem(t, form) is None for t in texts])),
                    "nll_per_char": float(np.mean([s.nll_per_char for s in scores])),
                    "seconds_per_poem": seconds,
                    "patterns": dict(Counter(n for t in texts for n in matching_patterns(t, form)[:1]).most_common()),
                })
                if search.endswith("(no options)"):
                    examples += [{"form": form, "tonal": tonal, "title": titles[j], "text": texts[j],
                                  "marks": table.marks(texts[j])} for j in range(2)]
    return rows, examples


def time_tonal(generator, titles: list[str], repeats: int = 5) -> list[dict]:
    """Greedy, batch 1, form vs form + tonal: ms per new token end to end (interleaved, best of `repeats`), and
    the tonal processor alone replayed over the same poems (µs per call, median over poems of the best of 3: cold =
    its shared tables emptied first, as in a fresh process; warm = as in a process that has already written a poem
    of the form)."""
    rows = []
    for form in FORMS:
        best = {False: np.inf, True: np.inf}
        for _ in range(repeats):
            for tonal in (False, True):
                tokens, t0 = 0, time.perf_counter()
                for title in titles:
                    p = generator.generate(title, form=form, tonal=tonal, do_sample=False)[0]
                    tokens += len(p.text) + 1
                best[tonal] = min(best[tonal], (time.perf_counter() - t0) * 1000 / tokens)
        poems = [generator.generate(t, form=form, tonal=True, do_sample=False)[0].text for t in titles]
        cold, warm = replay_us(generator.tokenizer, form, poems)
        rows.append({"form": form, "ms_per_token_form": best[False], "ms_per_token_tonal": best[True],
                     "overhead": best[True] / best[False] - 1, "processor_us_cold": cold,
                     "processor_us_warm": warm, "processor_share_cold": cold / 1000 / best[False],
                     "processor_share_warm": warm / 1000 / best[False]})
    return rows


def replay_us(tokenizer, form: str, poems: list[str], repeats: int = 3) -> tuple[float, float]:
    """µs per call of TonalConstraint over the prefixes of each poem (one row): the median over poems of each
    poem's best of `repeats`, cold (shared tables emptied before every replay) then warm."""
    from genrt.poems.verse import tonal
    out = []
    for cold in (True, False):
        per_poem = []
        for text in poems:
            ids = [tokenizer.sos_id] + tokenizer.encode_text(text)
            rows = [np.asarray([ids[:n]], np.int64) for n in range(1, len(ids) + 1)]
            logits = np.zeros((1, len(tokenizer.vocab)), np.float32)
            best = np.inf
            for _ in range(repeats):
                if cold:
                    tonal._shared_tables.cache_clear()
                t0 = time.perf_counter()
                constraint = tonal.TonalConstraint(tokenizer, form)
                for row in rows:
                    constraint(row, logits)
                best = min(best, (time.perf_counter() - t0) / len(rows) * 1e6)
            per_poem.append(best)
        out.append(float(np.median(per_poem)))
    return out[0], out[1]


def markdown(report: dict) -> str:
    lines = [f"Model: `{report['model']}` ({report['precision']}), {report['titles']} validation titles; "
             f"{report['machine']}.", "",
             "Real validation poems (the checker's check):", "",
             "| form | poems | follow a tonal pattern | rhyme in 平水韵 | characters with a reading | most common pattern |",
             "|---|---:|---:|---:|---:|---|"]
    for r in report["real"]:
        top = next(iter(r["patterns"]), "-")
        lines.append(f"| {r['form']} | {r['poems']} | {r['tonal']:.1%} | {r['pingshui_rhyme']:.1%} | "
                     f"{r['char_coverage']:.2%} | {top} |")
    lines += ["", "Generated, free (`--form F`) vs `--form F --tonal`:", "",
              "| form | search | tonal | well-formed | follow a tonal pattern | rhyme in 平水韵 | NLL/char | s/poem |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in report["generated"]:
        lines.append(f"| {r['form']} | {r['search']} | {'yes' if r['tonal'] else 'no'} | {r['shape']:.0%} | "
                     f"{r['follows_pattern']:.0%} | {r['pingshui_rhyme']:.0%} | {r['nll_per_char']:.3f} | "
                     f"{r['seconds_per_poem']:.2f} |")
    lines += ["", f"Cost per step (greedy, batch 1, end to end best of 5 interleaved; the processor alone replayed "
              f"over the same poems, as a share of the --form step; {report.get('timing_machine', report['machine'])}):",
              "",
              "| form | ms/token --form | ms/token --form --tonal | end-to-end overhead | processor µs/call cold "
              "| warm | processor share cold | warm |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["timing"]:
        lines.append(f"| {r['form']} | {r['ms_per_token_form']:.3f} | {r['ms_per_token_tonal']:.3f} | "
                     f"{r['overhead']:+.1%} | {r['processor_us_cold']:.1f} | {r['processor_us_warm']:.1f} | "
                     f"{r['processor_share_cold']:.1%} | {r['processor_share_warm']:.1%} |")
    lines += ["", "Examples (no options, with --tonal: 平/仄 under each character, 中 = both readings):", ""]
    for e in report["examples"]:
        if e["tonal"]:
            lines += [f"- 《{e['title']}》 {e['form']}: {e['text']}", f"  `{e['marks']}`"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from benchmarks.timing import cpu_info
    from genrt.poems.generator import PoemGenerator
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--precision", default=None)
    parser.add_argument("--titles", type=int, default=100)
    parser.add_argument("--timing-titles", type=int, default=10)
    parser.add_argument("--batch", type=int, default=25)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tonal.json"))
    parser.add_argument("--only-timing", action="store_true", help="rerun part 3 into an existing report")
    parser.add_argument("--skip-timing", action="store_true",
                        help="rerun parts 1 and 2 only, keeping part 3 of the existing report (for a busy machine)")
    args = parser.parse_args(argv)
    if args.only_timing and args.skip_timing:
        parser.error("--only-timing and --skip-timing exclude each other")
    generator = PoemGenerator.load(args.model, provider="cpu", threads=args.threads, precision=args.precision)
    titles, _, _ = load_split(args.cache, args.titles, args.seed)
    cpu = cpu_info()
    report = {"model": args.model or "bundled", "precision": generator.model.manifest.precision,
              "titles": len(titles), "machine": f"{cpu['model']} ({', '.join(cpu['flags'])}), "
                                                f"{args.threads or 'default'} threads"}
    if args.only_timing:
        report = {**json.loads(args.out.read_text(encoding="utf-8")), "timing_machine": report["machine"]}
    else:
        report["real"] = check_real(validation_poems(args.cache))
        report["generated"], report["examples"] = generate_rows(generator, titles, args.batch)
    if args.skip_timing:
        kept = json.loads(args.out.read_text(encoding="utf-8"))
        report["timing"], report["timing_machine"] = kept["timing"], kept.get("timing_machine", kept["machine"])
    else:
        report["timing"] = time_tonal(generator, titles[:args.timing_titles])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


if __name__ == "__main__":
    main()
