"""Search strategies behind one step interface, as whisper's TokenDecoder: `update` takes one step's logits for
the rows a request holds and says what to feed next; `result` gives the hypotheses at the end.

- `SampleSearch`: greedy, sampling and best-of-N (the picker differs; best-of ranks its rows at the end);
- `BeamSearch`: best-first beam search, or beam sampling with `BeamSampling`.

A strategy owns its rows' history, its processors and its random streams, so one scheduler can drive any mix of
requests in one decoder call (genrt.decoding.scheduler), and a request decodes the same whatever shares its steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from genrt.decoding.processors import (
    LogitsProcessor, apply_processors, logsumexp, pick_greedy, reorder_processors, top_candidates, top_ids,
)


@dataclass
class Hypothesis:
    tokens: list[int]        # generated ids after the forced prefix, <eos> excluded
    score: float             # sum of log-probabilities of the generated ids, <eos> included when finished
                             # (beam: after the logit processors, as ranked; greedy/sampling: the model's own)
    finished: bool           # ended with <eos> (False = stopped at the length limit)


@dataclass(frozen=True)
class Update:
    """What a strategy wants after one step: the next input id of each of its rows (R,), which old row each row
    continues (R,) when rows moved (beam search), and whether it is done (its rows can leave)."""
    tokens: np.ndarray
    source_rows: np.ndarray | None = None
    done: bool = False


class Search(Protocol):
    rows: int                                        # decoder rows it holds, constant for its lifetime

    def update(self, logits: np.ndarray, log_norm: np.ndarray) -> Update:
        """logits (R, V) for each row's next token (the search may write into them), log_norm (R,) their
        log-sum-exp."""
        ...

    def result(self) -> list[Hypothesis]:
        """The hypotheses to return, best first."""
        ...

    def settled(self) -> list[int]:
        """Generated ids certain to begin the first returned hypothesis (what streaming may show)."""
        ...


def _hypothesis(generated: Sequence[int], eos_id: int, score: float) -> Hypothesis:
    ids = list(generated)
    if eos_id in ids:
        return Hypothesis(ids[:ids.index(eos_id)], score, True)
    return Hypothesis(ids, score, False)


def _common_prefix(rows: np.ndarray) -> int:
    """Length of the prefix all rows (R, T) share."""
    if len(rows) == 1:
        return rows.shape[1]
    differs = (rows != rows[:1]).any(axis=0)
    return int(np.argmax(differs)) if differs.any() else rows.shape[1]


def best_by_mean_logprob(hyps: list[Hypothesis], keep: int) -> list[Hypothesis]:
    """best_of: the `keep` sampled candidates with the highest model log-probability per token (<eos> counted),
    finished poems before ones cut at the length limit."""
    return sorted(hyps, key=lambda h: (not h.finished, -h.score / (len(h.tokens) + h.finished)))[:keep]


class SampleSearch:
    """Greedy or sampling over R independent rows: `pick` maps processed logits (R, V) to ids (R,). With
    `best_of` the rows are candidates and `result` keeps the `num_return` most likely per token; otherwise every
    row is returned in order. Scores are the model's own log-probabilities (before any processor)."""

    def __init__(self, prefix: np.ndarray, max_new: int, eos_id: int, processors: Sequence[LogitsProcessor],
                 pick: Callable[[np.ndarray], np.ndarray], num_return: int | None = None, best_of: bool = False):
        self.prefix = prefix                                            # (R, P) <sos> + forced ids
        self.rows, p = prefix.shape
        self.p, self.max_new, self.eos_id = p, max_new, eos_id
        self.processors, self.pick = list(processors), pick
        self.num_return = self.rows if num_return is None else num_return
        self.best_of = best_of
        self.history = np.empty((self.rows, p + max_new), np.int64)    # (R, P + max_new), filled step by step;
        self.history[:, :p] = prefix                                    # processors see (R, P + step)
        self.score = np.zeros(self.rows)
        self.alive = np.ones(self.rows, bool)
        self.step = 0

    def update(self, logits: np.ndarray, log_norm: np.ndarray) -> Update:
        return SampleSearch.update_group([self], logits, log_norm)[0]

    @property
    def group_key(self) -> tuple | None:
        """Searches with equal keys may be stepped as one (`update_group`): greedy (a picker without per-row
        state), the same processor objects (stateless ones, shared), the same number of ids so far."""
        if self.pick is not pick_greedy:
            return None
        return (tuple(map(id, self.processors)), self.p + self.step, self.eos_id)

    @staticmethod
    def update_group(searches: Sequence["SampleSearch"], logits: np.ndarray, log_norm: np.ndarray) -> list[Update]:
        """One step of several searches whose rows are consecutive in `logits` (sum R, V), each as it would step
        alone: the processors and the picker work row by row, so running them once over all rows changes no
        row's result, and costs one numpy call where there were one per search."""
        first = searches[0]
        width = first.p + first.step
        tokens = first.history[:, :width] if len(searches) == 1 else \
            np.concatenate([s.history[:, :width] for s in searches])                     # (sum R, P + step)
        rows = np.arange(len(tokens))
        raw = logits[rows, :] if first.processors else logits  # processors write in place: keep the model's
        logits = apply_processors(first.processors, tokens, logits, first.eos_id)
        new = first.pick(logits).astype(np.int64, copy=False)                                # (sum R,)
        logprob = raw[rows, new] - log_norm                                                  # (sum R,)
        updates, offset = [], 0
        for s in searches:
            updates.append(s._advance(new[offset:offset + s.rows], logprob[offset:offset + s.rows]))
            offset += s.rows
        return updates

    def _advance(self, new: np.ndarray, logprob: np.ndarray) -> Update:
        if not self.alive.all():
            new[~self.alive], logprob[~self.alive] = self.eos_id, 0.0
        self.history[:, self.p + self.step] = new
        self.score += logprob
        self.alive &= new != self.eos_id
        self.step += 1
        return Update(new, None, self.step == self.max_new or not self.alive.any())

    def generated(self) -> np.ndarray:
        return self.history[:, self.p:self.p + self.step]                                  # (R, step)

    def result(self) -> list[Hypothesis]:
        hyps = [_hypothesis(row.tolist(), self.eos_id, float(s)) for row, s in zip(self.generated(), self.score)]
        return best_by_mean_logprob(hyps, self.num_return) if self.best_of else hyps[:self.num_return]

    def settled(self) -> list[int]:
        gen = self.generated()
        ids = gen[0, :_common_prefix(gen) if self.best_of else gen.shape[1]].tolist()
        return ids[:ids.index(self.eos_id)] if self.eos_id in ids else ids


@dataclass(frozen=True)
class BeamSampling:
    """Beam search that samples its candidates (transformers' "beam-search multinomial sampling"): each step
    keeps, per beam, the tokens temperature + top-k + top-p leave (as sampling would), then draws the 2K
    candidates without replacement (Gumbel top-k) in proportion to exp(cumulative log-prob / temperature).
    Hypotheses keep their true cumulative log-probs, so finished poems are ranked exactly as in beam search."""
    rng: np.random.Generator
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


class _Finished:
    """The best finished hypotheses, ranked by score / length ** length_penalty."""

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


class BeamSearch:
    """K beams of one prompt (R = K rows, identical at the start). Scores are the sums of processed
    log-probabilities; the best `num_return` hypotheses, by score / length ** length_penalty, are returned. With
    `sampling`, each step's candidates are drawn (BeamSampling) instead of taken best-first."""

    def __init__(self, prefix: np.ndarray, max_new: int, eos_id: int, processors: Sequence[LogitsProcessor],
                 length_penalty: float = 1.0, num_return: int = 1, sampling: BeamSampling | None = None):
        self.prefix = prefix                                 # (K, P) <sos> + forced ids, the same in every row
        self.rows, self.p = prefix.shape
        self.k, self.max_new, self.eos_id = self.rows, max_new, eos_id
        self.processors, self.sampling, self.num_return = list(processors), sampling, num_return
        self.scores = np.full(self.k, -np.inf)
        self.scores[0] = 0.0                                 # identical beams at start: expand only one
        self.tokens = prefix                                 # (K, P + t)
        self.finished = _Finished(max(self.k, num_return), length_penalty)
        self.t = 0
        self.done = False

    def update(self, logits: np.ndarray, log_norm: np.ndarray) -> Update:
        k = self.k
        self.t += 1
        logits = apply_processors(self.processors, self.tokens, logits, self.eos_id)            # (K, V)
        if self.sampling is None:
            # the best 2K continuations are among the best 2K of each beam; log-probs are needed only for those,
            # so the (K, V) log-softmax is never materialised
            row_top = top_ids(logits, 2 * k)                                                  # (K, 2K)
            cand = self.scores[:, None] + np.take_along_axis(logits, row_top, axis=1) - logsumexp(logits)
            rank = cand
        else:
            row_top, cand, rank = _sampled_candidates(logits, self.scores, self.sampling)    # (K, C) each
        rows, new_tok, new_scores = self._select(cand.ravel(), row_top.ravel(), rank.ravel(),
                                                 np.repeat(np.arange(k), row_top.shape[1]))
        live = new_scores[np.isfinite(new_scores)]
        self.done = self.done or self.finished.is_done(float(live.max()) if live.size else -np.inf, self.t)
        self.tokens = np.concatenate([self.tokens[rows], new_tok[:, None]], axis=1)
        self.scores = new_scores
        if self.done or self.t == self.max_new:
            self._close()
            return Update(new_tok, rows, True)
        reorder_processors(self.processors, rows)
        return Update(new_tok, rows, False)

    def _select(self, cand, cand_tok, rank, cand_beam):
        """Pick the next K live beams from the candidates (C,) (scores, token ids, ranking keys, source beam),
        best key first; candidates ending in <eos> go to the finished pool. -> source rows (K,), new tokens (K,),
        new scores (K,)."""
        k = self.k
        rows = np.zeros(k, np.int64)
        new_tok = np.full(k, self.eos_id, np.int64)
        new_scores = np.full(k, -np.inf)
        slot = 0
        for c in _best_first(rank, 2 * k):
            score = float(cand[c])
            if not np.isfinite(rank[c]) or not np.isfinite(score):
                break
            src, tok = int(cand_beam[c]), int(cand_tok[c])
            if tok == self.eos_id:
                if not self.done:
                    self.finished.add(Hypothesis(self.tokens[src, self.p:].tolist(), score, True), self.t)
                continue
            rows[slot], new_tok[slot], new_scores[slot] = src, tok, score
            slot += 1
            if slot == k:
                break
        return rows, new_tok, new_scores               # fewer than K live candidates: parked on row 0, -inf

    def _close(self) -> None:
        """Beams still alive at the end compete as unfinished hypotheses (unless the pool was already decided)."""
        if self.done:
            return
        for j in range(self.k):
            if np.isfinite(self.scores[j]):
                gen = self.tokens[j, self.p:]
                self.finished.add(_hypothesis(gen.tolist(), self.eos_id, float(self.scores[j])), len(gen))

    def result(self) -> list[Hypothesis]:
        return [h for _, h in self.finished.items[:self.num_return]]

    def settled(self) -> list[int]:
        """The prefix every live beam and every kept finished hypothesis share: whichever wins starts with it."""
        seqs = [row.tolist() for row in self.tokens[np.isfinite(self.scores), self.p:]]
        seqs += [h.tokens for _, h in self.finished.items]
        if self.t == 0 or not seqs:
            return []
        n = min(len(s) for s in seqs)
        same = next((i for i in range(n) if any(s[i] != seqs[0][i] for s in seqs)), n)
        ids = seqs[0][:same]
        return ids[:ids.index(self.eos_id)] if self.eos_id in ids else ids


def _sampled_candidates(logits: np.ndarray, scores: np.ndarray, sampling: BeamSampling
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """logits (K, V) after the processors, scores (K,) -> candidate ids, their cumulative log-probs and their
    sampling keys, each (K, C): key = cumulative log-prob / temperature + Gumbel noise, -inf outside the beam's
    top-k/top-p set."""
    ids, probs = top_candidates(logits, sampling.temperature, sampling.top_k, sampling.top_p)
    ids = np.ascontiguousarray(ids)
    cand = scores[:, None] + np.take_along_axis(logits, ids, axis=1) - logsumexp(logits)
    # the beam's set: what top-p leaves (probs > 0), or without top-p every top-k (or vocab) token the processors
    # allow, even one whose tempered probability underflows (a low temperature must not shrink the set)
    kept = (probs > 0) if sampling.top_p < 1.0 else np.isfinite(cand)
    keys = np.where(kept, cand / sampling.temperature, -np.inf)
    for r in range(len(keys)):               # a row's set is a prefix (best first) or, with no top-k/top-p, vocab order
        keys[r, kept[r]] += sampling.rng.gumbel(size=int(kept[r].sum()))
    return ids, cand, keys


def _best_first(keys: np.ndarray, m: int) -> np.ndarray:
    """Indices of the m largest keys, largest first (equal keys among those taken in index order)."""
    if len(keys) > 4 * m:
        part = np.argpartition(-keys, m)[:m]
        part.sort()
        return part[np.argsort(-keys[part], kind="stable")]
    return np.argsort(-keys, kind="stable")[:m]
