"""Search strategies over any model with `start`, `step(tokens, cache) -> (logits, cache)` and `reorder`.

`generate_tokens` is the one loop for greedy and sampling (the picker differs); `beam_search` keeps all beams
of all prompts as one batch and reorders the cache explicitly after every step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from genrt.poems.processors import LogitsProcessor, logsumexp, top_ids


class StepModel(Protocol):
    def start(self, sources: Sequence[Sequence[int]], copies: int = 1): ...
    def step(self, tokens: np.ndarray, cache): ...
    def reorder(self, cache, rows: np.ndarray): ...


@dataclass
class Hypothesis:
    tokens: list[int]        # generated ids after the forced prefix, <eos> excluded
    score: float             # sum of log-probabilities of the generated ids, <eos> included when finished
                             # (beam: after the logit processors, as ranked; greedy/sampling: the model's own)
    finished: bool           # ended with <eos> (False = stopped at the length limit)


def apply_processors(processors: Sequence[LogitsProcessor], tokens: np.ndarray, logits: np.ndarray,
                     eos_id: int) -> np.ndarray:
    """Run the processors in order. A row they left with no allowed token at all ends (<eos>) instead of
    picking from nothing."""
    for p in processors:
        logits = p(tokens, logits)
    dead = logits.max(axis=1) == -np.inf          # (N,) cheaper than isfinite over the whole row
    if dead.any():
        logits[dead, eos_id] = 0.0
    return logits


def reorder_processors(processors: Sequence[LogitsProcessor], rows: np.ndarray) -> None:
    for p in processors:
        if hasattr(p, "reorder"):
            p.reorder(rows)


def iter_tokens(model: StepModel, cache, prefix: np.ndarray, max_new: int, eos_id: int,
                processors: Sequence[LogitsProcessor], pick: Callable[[np.ndarray], np.ndarray]
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The greedy/sampling loop, one step per iteration. prefix (N, P) = <sos> + forced ids, a row per output.
    Yields (new ids (N,), still_alive (N,) bool, model log-prob of each new id (N,), 0 for rows already ended);
    rows that already ended get <eos> again. The log-prob is the model's, before any processor."""
    tokens = prefix
    logits, cache = model.step(prefix, cache)                                  # (N, V)
    alive = np.ones(len(prefix), bool)
    rows = np.arange(len(prefix))
    for step in range(max_new):
        log_norm = logsumexp(logits)[:, 0]                                     # (N,) before processors write
        raw = logits.copy()
        logits = apply_processors(processors, tokens, logits, eos_id)
        new = pick(logits).astype(np.int64, copy=False)                          # (N,)
        logprob = raw[rows, new] - log_norm                                      # (N,)
        if not alive.all():
            new[~alive], logprob[~alive] = eos_id, 0.0
        tokens = np.concatenate([tokens, new[:, None]], axis=1)
        alive &= new != eos_id
        yield new, alive.copy(), logprob
        if not alive.any() or step == max_new - 1:       # no decoder call for logits nobody will read
            return
        logits, cache = model.step(new[:, None], cache)


def generate_tokens(model: StepModel, cache, prefix: np.ndarray, max_new: int, eos_id: int,
                    processors: Sequence[LogitsProcessor], pick: Callable[[np.ndarray], np.ndarray]
                    ) -> list[Hypothesis]:
    """Greedy or sampling to the end: one Hypothesis per row of `prefix`."""
    steps, score = [], np.zeros(len(prefix))
    for new, _, logprob in iter_tokens(model, cache, prefix, max_new, eos_id, processors, pick):
        steps.append(new)
        score += logprob
    generated = np.stack(steps, axis=1) if steps else np.zeros((len(prefix), 0), np.int64)
    return [_hypothesis(row, eos_id, float(s)) for row, s in zip(generated, score)]


def _hypothesis(generated: np.ndarray, eos_id: int, score: float) -> Hypothesis:
    ids = generated.tolist()
    if eos_id in ids:
        return Hypothesis(ids[:ids.index(eos_id)], score, True)
    return Hypothesis(ids, score, False)


class _Finished:
    """The best finished hypotheses of one prompt, ranked by score / length ** length_penalty."""

    def __init__(self, size: int, length_penalty: float):
        self.size, self.lp, self.items = size, length_penalty, []

    def add(self, hyp: Hypothesis, length: int) -> None:
        self.items.append((hyp.score / max(1, length) ** self.lp, hyp))
        self.items.sort(key=lambda x: -x[0])
        del self.items[self.size:]

    def is_done(self, best_live_score: float, length: int) -> bool:
        if len(self.items) < self.size:
            return False
        return self.items[-1][0] >= best_live_score / max(1, length) ** self.lp


def beam_search(model: StepModel, cache, prefix: np.ndarray, num_beams: int, max_new: int, eos_id: int,
                processors: Sequence[LogitsProcessor], length_penalty: float = 1.0,
                num_return: int = 1) -> list[list[Hypothesis]]:
    """prefix (B*K, P): K identical rows per prompt, grouped. Returns, per prompt, the best `num_return`
    hypotheses (score = sum of log-probs; ranked by score / length ** length_penalty)."""
    k = num_beams
    b = len(prefix) // k
    scores = np.full((b, k), -np.inf)
    scores[:, 0] = 0.0                                      # identical beams at start: expand only one
    tokens = prefix
    finished = [_Finished(max(k, num_return), length_penalty) for _ in range(b)]
    done = np.zeros(b, bool)
    logits, cache = model.step(prefix, cache)               # (B*K, V)
    p = prefix.shape[1]
    cand_beam = np.repeat(np.arange(k), min(2 * k, logits.shape[1]))                          # (K*2K,)
    for t in range(1, max_new + 1):
        logits = apply_processors(processors, tokens, logits, eos_id)                        # (B*K, V)
        # the best 2K continuations of a prompt are among the best 2K of each of its beams; log-probs are
        # needed only for those, so the (B*K, V) log-softmax is never materialised
        row_top = top_ids(logits, 2 * k)                                                     # (B*K, 2K)
        top_logprobs = np.take_along_axis(logits, row_top, axis=1) - logsumexp(logits)       # (B*K, 2K)
        cand = scores.reshape(-1, 1) + top_logprobs                                          # (B*K, 2K)
        rows, new_tok, new_scores = _select(cand.reshape(b, -1), row_top.reshape(b, -1), cand_beam, k, tokens, p,
                                            t, eos_id, finished, done)
        for i in range(b):
            done[i] = done[i] or finished[i].is_done(float(new_scores[i].max()), t)
        if done.all() or t == max_new:
            tokens = np.concatenate([tokens[rows], new_tok[:, None]], axis=1)
            scores = new_scores
            break
        cache = model.reorder(cache, rows)
        reorder_processors(processors, rows)
        tokens = np.concatenate([tokens[rows], new_tok[:, None]], axis=1)
        scores = new_scores
        logits, cache = model.step(new_tok[:, None], cache)
    for i in range(b):  # beams still alive at the length limit compete as unfinished hypotheses
        if not done[i]:
            for j in range(k):
                if np.isfinite(scores[i, j]):
                    gen = tokens[i * k + j, p:]
                    finished[i].add(_hypothesis(gen, eos_id, float(scores[i, j])), len(gen))
    return [[h for _, h in f.items[:num_return]] for f in finished]


def _select(cand, cand_tok, cand_beam, k, tokens, p, t, eos_id, finished, done):
    """Pick the next K live beams per prompt from its candidates (B, C) (scores, token ids, and source beam per
    column); candidates ending in <eos> go to `finished`. Returns source rows (B*K,), new tokens (B*K,),
    new scores (B, K)."""
    b = cand.shape[0]
    rows = np.zeros(b * k, np.int64)
    new_tok = np.full(b * k, eos_id, np.int64)
    new_scores = np.full((b, k), -np.inf)
    for i in range(b):
        slot = 0
        for c in np.argsort(-cand[i], kind="stable")[:2 * k]:
            score = float(cand[i, c])
            if not np.isfinite(score):
                break
            src, tok = i * k + int(cand_beam[c]), int(cand_tok[i, c])
            if tok == eos_id:
                if not done[i]:
                    finished[i].add(Hypothesis(tokens[src, p:].tolist(), score, True), t)
                continue
            rows[i * k + slot], new_tok[i * k + slot], new_scores[i, slot] = src, tok, score
            slot += 1
            if slot == k:
                break
        for j in range(slot, k):  # fewer than K live candidates: park the slot on a dead copy
            rows[i * k + j] = i * k
    return rows, new_tok, new_scores
