"""Search strategies over any model with `start`, `step(tokens, cache) -> (logits, cache)` and `reorder`.

`generate_tokens` is the one loop for greedy and sampling (the picker differs); `beam_search` keeps all beams
of all prompts as one batch and reorders the cache explicitly after every step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from genrt.poems.processors import LogitsProcessor, logsumexp, top_candidates, top_ids


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
    picking from nothing (checked only when the processors could empty a row: `could_empty_a_row`)."""
    for p in processors:
        logits = p(tokens, logits)
    if could_empty_a_row(processors, logits.shape[1]):
        dead = logits.max(axis=1) == -np.inf      # (N,) cheaper than isfinite over the whole row
        if dead.any():
            logits[dead, eos_id] = 0.0
    return logits


def could_empty_a_row(processors: Sequence[LogitsProcessor], vocab_size: int) -> bool:
    """False when every processor declares `max_banned_ids` (how many ids it can ever ban: a fixed set, or none
    for one that only rescales) and together they leave at least one id of the vocabulary."""
    banned = 0
    for p in processors:
        count = getattr(p, "max_banned_ids", None)
        if count is None:
            return True
        banned += count
    return banned >= vocab_size


def reorder_processors(processors: Sequence[LogitsProcessor], rows: np.ndarray) -> None:
    for p in processors:
        if hasattr(p, "reorder"):
            p.reorder(rows)


def step_log_norm(cache, logits: np.ndarray) -> np.ndarray:
    """(N,) log-sum-exp of the logits (N, V) a step just returned with `cache`: computed by the decoder graph when
    it has a log_norm output (a vectorised LogSoftmax, cheaper than a numpy pass over the vocabulary), else here."""
    given = getattr(cache, "log_norm", None)
    return given if given is not None else logsumexp(logits)[:, 0]


def iter_tokens(model: StepModel, cache, prefix: np.ndarray, max_new: int, eos_id: int,
                processors: Sequence[LogitsProcessor], pick: Callable[[np.ndarray], np.ndarray]
                ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The greedy/sampling loop, one step per iteration. prefix (N, P) = <sos> + forced ids, a row per output.
    Yields (new ids (N,), still_alive (N,) bool, model log-prob of each new id (N,), 0 for rows already ended);
    rows that already ended get <eos> again. The log-prob is the model's, before any processor."""
    n, p = prefix.shape
    history = np.empty((n, p + max_new), np.int64)   # (N, P + max_new): the ids so far, filled step by step; the
    history[:, :p] = prefix                          # processors see the (N, P + step) view of what is written
    logits, cache = model.step(prefix, cache)                                  # (N, V)
    alive = np.ones(n, bool)
    some_ended = False
    rows = np.arange(n)
    for step in range(max_new):
        log_norm = step_log_norm(cache, logits)                                # (N,) before processors write
        raw = logits.copy()
        logits = apply_processors(processors, history[:, :p + step], logits, eos_id)
        new = pick(logits).astype(np.int64, copy=False)                          # (N,)
        logprob = raw[rows, new] - log_norm                                      # (N,)
        if some_ended:
            new[~alive], logprob[~alive] = eos_id, 0.0
        history[:, p + step] = new
        ended = new == eos_id
        if ended.any():
            alive &= ~ended
            some_ended = True
        yield new, alive.copy(), logprob
        if (some_ended and not alive.any()) or step == max_new - 1:   # no decoder call for logits nobody reads
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


@dataclass(frozen=True)
class BeamSampling:
    """Beam search that samples its candidates (transformers' "beam-search multinomial sampling"): each step
    keeps, per beam, the tokens temperature + top-k + top-p leave (as sampling would), then draws the prompt's 2K
    candidates without replacement (Gumbel top-k) in proportion to exp(cumulative log-prob / temperature).
    Hypotheses keep their true cumulative log-probs, so finished poems are ranked exactly as in beam search.
    `rngs` holds one stream per prompt: a prompt draws the same numbers alone or in a batch."""
    rngs: Sequence[np.random.Generator]
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


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
                num_return: int = 1, sampling: BeamSampling | None = None) -> list[list[Hypothesis]]:
    """prefix (B*K, P): K identical rows per prompt, grouped. Returns, per prompt, the best `num_return`
    hypotheses (score = sum of log-probs; ranked by score / length ** length_penalty). With `sampling`, the
    candidates of each step are drawn (BeamSampling) instead of taken best-first."""
    k = num_beams
    b = len(prefix) // k
    scores = np.full((b, k), -np.inf)
    scores[:, 0] = 0.0                                      # identical beams at start: expand only one
    tokens = prefix
    finished = [_Finished(max(k, num_return), length_penalty) for _ in range(b)]
    done = np.zeros(b, bool)
    logits, cache = model.step(prefix, cache)               # (B*K, V)
    p = prefix.shape[1]
    if sampling is not None and len(sampling.rngs) != b:
        raise ValueError(f"{len(sampling.rngs)} random streams for {b} prompts")
    for t in range(1, max_new + 1):
        logits = apply_processors(processors, tokens, logits, eos_id)                        # (B*K, V)
        if sampling is None:
            # the best 2K continuations of a prompt are among the best 2K of each of its beams; log-probs are
            # needed only for those, so the (B*K, V) log-softmax is never materialised
            row_top = top_ids(logits, 2 * k)                                                 # (B*K, 2K)
            cand = scores.reshape(-1, 1) + np.take_along_axis(logits, row_top, axis=1) - logsumexp(logits)
            rank = cand                                                                      # (B*K, 2K)
        else:
            row_top, cand, rank = _sampled_candidates(logits, scores, sampling)             # (B*K, C) each
        cand_beam = np.repeat(np.arange(k), row_top.shape[1])                                # (K*C,)
        rows, new_tok, new_scores = _select(cand.reshape(b, -1), row_top.reshape(b, -1), rank.reshape(b, -1),
                                            cand_beam, k, tokens, p, t, eos_id, finished, done)
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


def _sampled_candidates(logits: np.ndarray, scores: np.ndarray, sampling: BeamSampling
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """logits (B*K, V) after the processors, scores (B, K) -> candidate ids, their cumulative log-probs and
    their sampling keys, each (B*K, C): key = cumulative log-prob / temperature + Gumbel noise, -inf outside
    the beam's top-k/top-p set. The noise of a prompt's rows comes from that prompt's stream."""
    ids, probs = top_candidates(logits, sampling.temperature, sampling.top_k, sampling.top_p)
    ids = np.ascontiguousarray(ids)
    cand = scores.reshape(-1, 1) + np.take_along_axis(logits, ids, axis=1) - logsumexp(logits)
    # the beam's set: what top-p leaves (probs > 0), or without top-p every top-k (or vocab) token the processors
    # allow, even one whose tempered probability underflows (a low temperature must not shrink the set)
    kept = (probs > 0) if sampling.top_p < 1.0 else np.isfinite(cand)
    keys = np.where(kept, cand / sampling.temperature, -np.inf)
    k = scores.shape[1]
    for r in range(len(keys)):               # a row's set is a prefix (best first) or, with no top-k/top-p, vocab order
        keys[r, kept[r]] += sampling.rngs[r // k].gumbel(size=int(kept[r].sum()))
    return ids, cand, keys


def _best_first(keys: np.ndarray, m: int) -> np.ndarray:
    """Indices of the m largest keys, largest first (equal keys among those taken in index order)."""
    if len(keys) > 4 * m:
        part = np.argpartition(-keys, m)[:m]
        part.sort()
        return part[np.argsort(-keys[part], kind="stable")]
    return np.argsort(-keys, kind="stable")[:m]


def _select(cand, cand_tok, rank, cand_beam, k, tokens, p, t, eos_id, finished, done):
    """Pick the next K live beams per prompt from its candidates (B, C) (scores, token ids, ranking keys, and
    source beam per column), best key first; candidates ending in <eos> go to `finished`. Returns source rows
    (B*K,), new tokens (B*K,), new scores (B, K)."""
    b = cand.shape[0]
    rows = np.zeros(b * k, np.int64)
    new_tok = np.full(b * k, eos_id, np.int64)
    new_scores = np.full((b, k), -np.inf)
    for i in range(b):
        slot = 0
        for c in _best_first(rank[i], 2 * k):
            score = float(cand[i, c])
            if not np.isfinite(rank[i, c]) or not np.isfinite(score):
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
