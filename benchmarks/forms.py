"""Benchmark of constrained decoding (genrt.poems.verse.forms): does the constraint give well-formed poems, what does it
cost in model likelihood, and what does it cost in time?

    python -m benchmarks.forms --model genrt/models/poems --prompts-per-form 200
    python -m benchmarks.forms --micro-only          # processor cost only, synthetic 8000-token vocab, no model

For each form, N title prompts are decoded greedily twice: without the constraint (the runtime's usual
SuppressTokens only) and with FormConstraint; when the model was trained with form tokens (<qijue> ...), both
runs are repeated with the form's token in the source, to see whether the token alone gets the shape right and
whether the constraint then has less to fight (lower NLL). Reported per form and token setting:
  * well_formed: share of outputs that fit the form (genrt.poems.verse.forms.well_formed), unconstrained vs constrained;
  * nll_per_token: mean negative log-likelihood of the chosen tokens (<eos> included) under the model's raw
    logits, i.e. how far the constraint pushes the model off its own preferences;
  * constraint_changed_output: share of prompts whose constrained poem differs from the free one (how often the
    constraint had to step in at all);
  * timing: model step and constraint time per decoding step (batch rows at once), and their ratio.
Writes benchmarks/results/forms.json and forms.md.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from genrt.contract import SPECIAL_TOKENS
from genrt.poems.verse.forms import FORMS, FormConstraint, resolve_form, well_formed
from genrt.decoding.processors import SuppressTokens, pick_greedy
from genrt.decoding.scheduler import decode
from genrt.decoding.search import SampleSearch
from genrt.poems.tokenizer import CharTokenizer

RESULTS = Path(__file__).resolve().parent / "results"
THEMES = ("春 夏 秋 冬 山 水 江 河 月 风 雪 雨 花 柳 松 竹 梅 菊 云 夜 晓 晚 归 别 思 送 登 望 游 怀 "
          "故乡 边塞 田园 明月 黄河 长江 西湖 南山 孤舟 落日 秋风 春雨 寒梅 夜泊 离别 相思 登高 远望").split()


class TimedModel:
    """Wraps a StepModel: counts the calls of `step` and the time spent in them."""

    def __init__(self, model):
        self.model, self.seconds, self.calls = model, 0.0, 0
        self.manifest = model.manifest

    def start(self, sources, copies=1):
        return self.model.start(sources, copies)

    def step(self, tokens, cache):
        t = time.perf_counter()
        logits, cache = self.model.step(tokens, cache)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return logits, cache

    def reorder(self, cache, rows):
        return self.model.reorder(cache, rows)

    def join(self, first, second):
        return self.model.join(first, second)


class Timed:
    """Wraps a LogitsProcessor and adds up its time."""

    def __init__(self, processor):
        self.processor, self.seconds = processor, 0.0

    def __call__(self, tokens, logits):
        t = time.perf_counter()
        out = self.processor(tokens, logits)
        self.seconds += time.perf_counter() - t
        return out


def make_prompts(tokenizer: CharTokenizer, count: int) -> list[str]:
    """`count` short titles from THEMES (single themes, then pairs), keeping those fully in the vocab."""
    pairs = [a + b for a in THEMES for b in THEMES if a != b]
    prompts = [p for p in [*THEMES, *pairs] if not tokenizer.unknown_chars(p)]
    return prompts[:count]


def decode_greedy(model, tokenizer: CharTokenizer, prompts: Sequence[str], constraint, max_new: int, batch: int,
                  form_tag: str | None = None) -> dict:
    """Greedy decoding of all prompts, `batch` at a time, the source tagged with `form_tag`'s token if given.
    Returns texts, per-poem NLL/token and timings."""
    never = tokenizer.never_generated_ids
    texts, nlls, step_calls, step_s, proc_s = [], [], 0, 0.0, 0.0
    for i in range(0, len(prompts), batch):
        chunk = prompts[i:i + batch]
        timed_model = TimedModel(model)
        form_proc = Timed(constraint) if constraint is not None else None
        processors = [SuppressTokens(never)] + ([form_proc] if form_proc else [])
        sources = [tokenizer.encode_prompt(p, "title", model.manifest.max_len, form_tag) for p in chunk]
        searches = [SampleSearch(np.array([[tokenizer.sos_id]]), max_new, tokenizer.eos_id, processors, pick_greedy)
                    for _ in chunk]
        hyps = [h[0] for h in decode(timed_model, sources, searches)]
        nlls += [-h.score / (len(h.tokens) + h.finished) for h in hyps]   # the model's own log-probs
        texts += [tokenizer.decode(h.tokens) for h in hyps]
        step_calls += timed_model.calls
        step_s += timed_model.seconds
        proc_s += form_proc.seconds if form_proc else 0.0
    return {"texts": texts, "nll": float(np.mean(nlls)), "step_us": 1e6 * step_s / step_calls,
            "constraint_us": 1e6 * proc_s / step_calls}


def bench_form(model, tokenizer, form: str, prompts: Sequence[str], rhyme: bool, batch: int) -> list[dict]:
    """One row per token setting: without the form token, and with it when the model knows form tokens."""
    constraint = FormConstraint(tokenizer, form, None, rhyme)
    max_new = min(model.manifest.max_len - 1, 2 * constraint.max_tokens)
    share = lambda run: float(np.mean([well_formed(t, form, None, rhyme) for t in run["texts"]]))  # noqa: E731
    ascii_name = resolve_form(form).aliases[0]
    rows = []
    for tag in [None] + ([ascii_name] if ascii_name in tokenizer.form_ids else []):
        free = decode_greedy(model, tokenizer, prompts, None, max_new, batch, tag)
        bound = decode_greedy(model, tokenizer, prompts, constraint, max_new, batch, tag)
        rows.append({
            "form": form, "rhyme": rhyme, "form_token": tag is not None, "prompts": len(prompts),
            "well_formed_unconstrained": share(free), "well_formed_constrained": share(bound),
            "nll_per_token_unconstrained": free["nll"], "nll_per_token_constrained": bound["nll"],
            "constraint_changed_output": float(np.mean([a != b for a, b in zip(free["texts"], bound["texts"])])),
            "step_us": bound["step_us"], "constraint_us": bound["constraint_us"],
            "constraint_overhead": bound["constraint_us"] / bound["step_us"],
            "examples": bound["texts"][:3], "examples_unconstrained": free["texts"][:3],
        })
    return rows


def micro_benchmark(vocab_size: int = 8000, rows: Sequence[int] = (1, 32), repeats: int = 3) -> list[dict]:
    """Processor time per call over whole poems, on a synthetic vocab and random logits (no model)."""
    vocab = list(SPECIAL_TOKENS) + list("，。？！") + [chr(0x4e00 + i) for i in range(vocab_size - 10)]
    tokenizer, rng, out = CharTokenizer(vocab), np.random.default_rng(0), []
    for form, acrostic, rhyme in (("五言绝句", None, False), ("七言律诗", "一丁七万", True), (None, "一丁七万", True)):
        constraint = FormConstraint(tokenizer, form, acrostic, rhyme)
        for n in rows:
            times = []
            for _ in range(repeats):
                tokens = np.full((n, 1), tokenizer.sos_id, np.int64)                  # (N, T)
                while tokens.shape[1] <= constraint.max_tokens:
                    logits = rng.standard_normal((n, vocab_size)).astype(np.float32)    # (N, V)
                    t = time.perf_counter()
                    logits = constraint(tokens, logits)
                    times.append(time.perf_counter() - t)
                    tokens = np.concatenate([tokens, logits.argmax(axis=1)[:, None]], axis=1)
            out.append({"form": form, "acrostic": acrostic, "rhyme": rhyme, "rows": n, "vocab": vocab_size,
                        "median_us": 1e6 * float(np.median(times)), "mean_us": 1e6 * float(np.mean(times))})
    return out


def open_model(model_dir: str, threads: int | None):
    from genrt.poems.model import PoemModel
    return PoemModel.load(model_dir, provider="cpu", threads=threads)


def write_results(results: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "forms.json").write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    lines = ["# Constrained decoding (genrt.poems.verse.forms)", ""]
    if results.get("forms"):
        lines += [f"Model: `{results['model']}`, greedy, batch {results['batch']}.", "",
                  "| form | rhyme | form token in source | prompts | well-formed free | well-formed constrained | "
                  "NLL/token free | NLL/token constrained | constraint changed the poem | model step µs | "
                  "constraint µs/step | overhead |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['form']} | {r['rhyme']} | {'yes' if r.get('form_token') else 'no'} | {r['prompts']} | "
                  f"{r['well_formed_unconstrained']:.1%} | "
                  f"{r['well_formed_constrained']:.1%} | {r['nll_per_token_unconstrained']:.3f} | "
                  f"{r['nll_per_token_constrained']:.3f} | {r.get('constraint_changed_output', float('nan')):.1%} | "
                  f"{r['step_us']:.0f} | "
                  f"{r['constraint_us']:.1f} | {r['constraint_overhead']:.1%} |" for r in results["forms"]]
        lines.append("")
    lines += ["Processor alone (synthetic vocab, random logits, whole poems):", "",
              "| form | acrostic | rhyme | rows | vocab | median µs/call | mean µs/call |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {m['form']} | {m['acrostic']} | {m['rhyme']} | {m['rows']} | {m['vocab']} | {m['median_us']:.1f} | "
              f"{m['mean_us']:.1f} |" for m in results["micro"]]
    (out_dir / "forms.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(Path(__file__).resolve().parents[1] / "genrt" / "models" / "poems"))
    ap.add_argument("--prompts-per-form", type=int, default=200)
    ap.add_argument("--forms", nargs="*", default=list(FORMS))
    ap.add_argument("--rhyme", action="store_true", help="also require rhyme")
    ap.add_argument("--batch", type=int, default=1, help="prompts decoded together")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--micro-only", action="store_true", help="only time the processor on a synthetic vocab")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    results: dict = {"micro": micro_benchmark()}
    if not args.micro_only:
        model = open_model(args.model, args.threads)
        tokenizer = CharTokenizer(model.manifest.vocab)
        prompts = make_prompts(tokenizer, args.prompts_per_form)
        results.update(model=args.model, batch=args.batch, forms=[
            row for form in args.forms for row in bench_form(model, tokenizer, form, prompts, args.rhyme, args.batch)])
    write_results(results, Path(args.out))
    print((Path(args.out) / "forms.md").read_text(encoding="utf-8"))
    return results


if __name__ == "__main__":
    main()
