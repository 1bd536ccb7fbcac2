"""Search strategies behind one step interface, as whisper's TokenDecoder: `update` takes one step's logits for
the rows a request holds and says what to feed next; `result` gives the hypotheses at the end.

- `SampleSearch`: greedy, sampling and best-of-N (the picker differs; best-of ranks its rows at the end);
- `BeamSearch`: best-first beam search, or beam sampling with `BeamSampling`.

A strategy owns its rows' history, its processors and its random streams, so one scheduler can drive any mix of
requests in one decoder call (genrt.decoding.scheduler), and a request decodes the same whatever shares its steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Protocol, Sequence

import numpy as np

from genrt.decoding.processors import (
    LogitsProcessor, apply_processors, could_empty_a_row, end_empty_rows, logsumexp, pick_greedy, reorder_processors,
    sample_rows, top_candidates, top_ids,
)


@dataclass
class Hypothesis:
    tokens: list[int]        # generated ids after the forced prefix, <eos> excluded
    score: float             # sum of log-probabilities of the generated ids, <eos> included when finished
                             # (beam: after the logit processors, as ranked; greedy/sampling: the model's own)
    finished: bool           # ended with <eos> (False = stopped at the length limit)


class Update(NamedTuple):
    """What a strategy wants after one step: the next input id of each of its rows (R,), which old row each row
    continues (R,) when rows moved (beam search), and whether it is done (its rows can leave). A named tuple: one
    is made per request and step, and a tuple is made in a third of a frozen dataclass's time."""
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
        """The hypotheses to return: best first where the strategy ranks them (beams, best_of), else in row
        order."""
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
        # what greedy searches stepping as one must share besides their length (group_key); built once, as the
        # scheduler asks every step
        self._kind = (tuple(map(id, self.processors)), eos_id) if pick is pick_greedy else None
        self._group: _SampleGroup | None = None     # the group whose arrays hold its history, score and alive flags

    def update(self, logits: np.ndarray, log_norm: np.ndarray) -> Update:
        return SampleSearch.update_group([self], logits, log_norm)[0]

    @property
    def group_key(self) -> tuple | None:
        """Searches with equal keys may be stepped as one (`update_group`): greedy (a picker without per-row
        state), the same processor objects (stateless ones, shared), the same number of ids so far."""
        return None if self._kind is None else (self._kind, self.p + self.step)

    @staticmethod
    def update_group(searches: Sequence["SampleSearch"], logits: np.ndarray, log_norm: np.ndarray) -> list[Update]:
        """One step of several searches whose rows are consecutive in `logits` (sum R, V), each as it would step
        alone: the processors and the picker work row by row, so running them once over all rows changes no
        row's result, and costs one numpy call where there were one per search."""
        group = _SampleGroup.of(searches)
        first = searches[0]
        tokens = group.history[:, :first.p + first.step]                                   # (sum R, P + step)
        raw = logits.copy() if first.processors else logits   # processors write in place: keep the model's
        logits = apply_processors(first.processors, tokens, logits, first.eos_id)
        new = first.pick(logits).astype(np.int64, copy=False)                                # (sum R,)
        logprob = raw[group.row_ids, new] - log_norm                                         # (sum R,)
        return group.advance(new, logprob)

    @property
    def sampler_key(self) -> tuple | None:
        """Sampling searches with equal keys may pick together (`update_sampled`), each keeping its own
        processors and random streams: a picker with per-row streams and the same temperature, top-k, top-p."""
        return getattr(self.pick, "key", None)

    @staticmethod
    def update_sampled(searches: Sequence["SampleSearch"], rows: Sequence[slice], logits: np.ndarray,
                       log_norm: np.ndarray) -> list[Update]:
        """One step of sampling searches with equal `sampler_key`s, each over its `rows` of the step's logits
        (V wide) and log_norm: each runs its own processors, then one sample_rows call finds the candidates of
        all their rows and each draws from its own streams. Row by row throughout, so every search steps exactly
        as it would alone; one candidate search where there were one per request."""
        index = np.concatenate([np.arange(r.start, r.stop) for r in rows])                 # (sum R,)
        raw = logits[index]                                  # (sum R, V) a copy: the model's, for the scores
        processed = raw.copy() if any(s.processors for s in searches) else raw
        starts = np.cumsum([0] + [s.rows for s in searches]).tolist()
        for first, last in _processor_runs(searches):
            run = searches[first:last]
            a, b = starts[first], starts[last]
            if len(run) == 1:
                s = run[0]
                processed[a:b] = apply_processors(s.processors, s.history[:, :s.p + s.step], processed[a:b],
                                                  s.eos_id)
            else:
                _apply_over_run(run, starts[first:last + 1], processed[a:b])
        new = sample_rows([s.pick for s in searches], processed).astype(np.int64, copy=False)  # (sum R,)
        logprob = raw[np.arange(len(index)), new] - log_norm[index]                          # (sum R,)
        return [_SampleGroup.of([s]).advance(new[a:b], logprob[a:b])[0]
                for s, a, b in zip(searches, starts[:-1], starts[1:])]

    def generated(self) -> np.ndarray:
        return self.history[:, self.p:self.p + self.step]                                  # (R, step)

    def result(self) -> list[Hypothesis]:
        hyps = [_hypothesis(row.tolist(), self.eos_id, float(s)) for row, s in zip(self.generated(), self.score)]
        return best_by_mean_logprob(hyps, self.num_return) if self.best_of else hyps[:self.num_return]

    def settled(self) -> list[int]:
        gen = self.generated()
        ids = gen[0, :_common_prefix(gen) if self.best_of else gen.shape[1]].tolist()
        return ids[:ids.index(self.eos_id)] if self.eos_id in ids else ids


def _processor_runs(searches: Sequence[SampleSearch]) -> list[tuple[int, int]]:
    """[first, last) of each run of consecutive searches with processors, the same number of ids so far, the same
    <eos> and as many processors: their processors can run position by position over all their rows at once."""
    runs: list[tuple[int, int]] = []
    key = None
    for i, s in enumerate(searches):
        this = (s.p + s.step, s.eos_id, len(s.processors)) if s.processors else None
        if this is not None and this == key:
            runs[-1] = (runs[-1][0], i + 1)
        elif this is not None:
            runs.append((i, i + 1))
        key = this
    return runs


def _apply_over_run(run: Sequence[SampleSearch], starts: Sequence[int], logits: np.ndarray) -> None:
    """apply_processors for each search of the run, on `logits` (their rows, V) in place: the k-th processor runs
    once over all the rows where every search has that same (stateless, shared) object, else search by search.
    Processors work row by row, so each row gets exactly what its own search's list would give it."""
    tokens = np.concatenate([s.history[:, :s.p + s.step] for s in run])                  # (rows, P + step)
    spans = [(a - starts[0], b - starts[0]) for a, b in zip(starts[:-1], starts[1:])]

    def apply(processor: LogitsProcessor, ids: np.ndarray, rows: np.ndarray) -> None:
        out = processor(ids, rows)                   # processors write in place and return their argument
        if out is not rows:
            rows[...] = out
    for k, shared in enumerate(run[0].processors):
        if all(s.processors[k] is shared for s in run):
            apply(shared, tokens, logits)
        else:
            for s, (a, b) in zip(run, spans):
                apply(s.processors[k], tokens[a:b], logits[a:b])
    if any(could_empty_a_row(s.processors, logits.shape[1]) for s in run):
        end_empty_rows(logits, run[0].eos_id)


class _SampleGroup:
    """Searches that step together (the same ones, in the same order, step after step) keep their history, score
    and alive flags as row slices of one array each: a step writes each array once for the whole group, and the
    processors read the group's history without a concatenation. Formed again whenever the membership changes
    (a search finished, or another joined): the members' state is copied into fresh arrays."""

    def __init__(self, searches: Sequence[SampleSearch]):
        self.searches = list(searches)
        self.starts = np.cumsum([0] + [s.rows for s in searches])                        # (G + 1,)
        rows = int(self.starts[-1])
        self.row_ids = np.arange(rows)
        self.history = np.empty((rows, max(s.history.shape[1] for s in searches)), np.int64)  # (sum R, width)
        self._spans = list(zip(self.starts[:-1].tolist(), self.starts[1:].tolist()))     # each member's rows
        self.score = np.concatenate([s.score for s in searches])                          # (sum R,)
        self.alive = np.concatenate([s.alive for s in searches])                          # (sum R,)
        for s, a, b in zip(searches, self.starts[:-1], self.starts[1:]):
            width = s.history.shape[1]
            self.history[a:b, :width] = s.history
            s.history, s.score, s.alive = self.history[a:b, :width], self.score[a:b], self.alive[a:b]
            s._group = self

    @classmethod
    def of(cls, searches: Sequence[SampleSearch]) -> "_SampleGroup":
        """The group these searches already form (each still holds its state there), else a new one."""
        group = searches[0]._group
        if group is not None and group.searches == list(searches) and all(s._group is group for s in searches):
            return group
        return cls(searches)

    def advance(self, new: np.ndarray, logprob: np.ndarray) -> list[Update]:
        """Record one step's ids (sum R,) and their log-probs; rows that ended keep taking <eos> at no cost."""
        first = self.searches[0]
        eos = first.eos_id
        if not self.alive.all():
            new[~self.alive], logprob[~self.alive] = eos, 0.0
        self.history[:, first.p + first.step] = new            # every member has the same number of ids so far
        self.score += logprob
        self.alive &= new != eos
        if len(self.searches) == 1:
            s = first
            s.step += 1
            return [Update(new, None, s.step == s.max_new or not self.alive.any())]
        any_alive = np.logical_or.reduceat(self.alive, self.starts[:-1])                   # (G,)
        updates = []
        for s, (a, b), alive in zip(self.searches, self._spans, any_alive.tolist()):
            s.step += 1
            updates.append(Update(new[a:b], None, s.step == s.max_new or not alive))
        return updates


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
        self._stateful = [p for p in self.processors if hasattr(p, "reorder")]     # follow the beams' moves
        # what best-first searches stepping as one must share besides their length (group_key): beams drawn from
        # a search's own random stream, or processors with per-row state, step alone
        self._kind = (tuple(map(id, self.processors)), eos_id, self.k) \
            if sampling is None and not self._stateful else None

    def update(self, logits: np.ndarray, log_norm: np.ndarray) -> Update:
        return BeamSearch.update_group([self], logits, log_norm)[0]

    @property
    def group_key(self) -> tuple | None:
        """Searches with equal keys may be stepped as one (`update_group`): best-first, the same stateless
        processor objects, the same number of beams and of ids so far."""
        return None if self._kind is None else (self._kind, self.p + self.t)

    @staticmethod
    def update_group(searches: Sequence["BeamSearch"], logits: np.ndarray, log_norm: np.ndarray) -> list[Update]:
        """One step of G searches whose K rows each are consecutive in `logits` (G*K, V), each as it would step
        alone: processors, top candidates and log-softmax work row by row, and the best-first selection of each
        search's next beams is done for all of them at once (one numpy call per stage instead of one per search)."""
        first, g = searches[0], len(searches)
        k = first.k
        for s in searches:
            s.t += 1
        tokens = first.tokens if g == 1 else np.concatenate([s.tokens for s in searches])       # (G*K, P + t)
        logits = apply_processors(first.processors, tokens, logits, first.eos_id)               # (G*K, V)
        if first.sampling is None:
            # the best 2K continuations are among the best 2K of each beam; log-probs are needed only for those,
            # so the (G*K, V) log-softmax is never materialised
            scores = first.scores if g == 1 else np.concatenate([s.scores for s in searches])   # (G*K,)
            row_top = top_ids(logits, 2 * k)                                                    # (G*K, 2K)
            cand = scores[:, None] + np.take_along_axis(logits, row_top, axis=1) - logsumexp(logits)
            rank = None                            # best-first: ranked by the scores themselves
        else:                                      # alone (no group_key): its own random stream
            row_top, cand, rank = _sampled_candidates(logits, first.scores, first.sampling)      # (K, C) each
        per_beam = row_top.shape[1]
        rows, new_tok, new_scores = _select_beams(searches, cand.reshape(g, -1), row_top.reshape(g, -1),
                                                  None if rank is None else rank.reshape(g, -1), per_beam)
        best_live = new_scores.max(axis=1).tolist()            # (G,) -inf where no candidate lives
        moved = (rows != np.arange(k)).any(axis=1).tolist()    # (G,)
        sources = (rows + k * np.arange(g)[:, None]).ravel()                                     # (G*K,)
        grown = np.concatenate([tokens[sources], new_tok.reshape(-1, 1)], axis=1)                # (G*K, P + t + 1)
        updates = []
        for i, s in enumerate(searches):
            s.done = s.done or s.finished.is_done(best_live[i], s.t)
            s.tokens, s.scores = grown[i * k:(i + 1) * k], new_scores[i]
            if s.done or s.t == s.max_new:
                s._close()
                updates.append(Update(new_tok[i], rows[i], True))
                continue
            if s._stateful:
                reorder_processors(s._stateful, rows[i])
            updates.append(Update(new_tok[i], rows[i] if moved[i] else None, False))
        return updates

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


def _select_beams(searches: Sequence[BeamSearch], cand: np.ndarray, cand_tok: np.ndarray, rank: np.ndarray | None,
                  per_beam: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each search's next K live beams from its candidates, row g of cand / cand_tok / rank (G, K*C): scores,
    token ids and ranking keys (None: the scores), beam-major (candidate c continues beam c // per_beam).
    Candidates are read best key first up to the first non-finite key or score, or until K live ones are taken:
    those ending in <eos> go to the search's finished pool on the way. -> source rows, new tokens, new scores,
    each (G, K); a search with fewer than K live candidates parks the rest on row 0 with score -inf."""
    first, g = searches[0], len(searches)
    k, eos = first.k, first.eos_id
    at = (np.arange(g)[:, None], _best_first(cand if rank is None else rank, 2 * k))             # (G, 2K) each
    score, tok, src = cand[at], cand_tok[at], at[1] // per_beam
    read = np.isfinite(score) if rank is None else np.isfinite(score) & np.isfinite(rank[at])
    read = np.logical_and.accumulate(read, axis=1)                          # up to the first non-finite one
    live = read & (tok != eos)
    before = live.cumsum(axis=1) - live                    # live candidates ranked before each one
    read &= before < k                                     # reading stops at the K-th live one
    ended = read & ~live
    if ended.any():
        for i, c in zip(*np.nonzero(ended)):               # in each search's reading order
            s = searches[i]
            if not s.done:
                s.finished.add(Hypothesis(s.tokens[src[i, c], s.p:].tolist(), float(score[i, c]), True), s.t)
    taken = live & read
    if taken.sum() == g * k:                               # every search has its K (row-major: rank order)
        rows, new_tok, new_scores = src[taken].reshape(g, k), tok[taken].reshape(g, k), score[taken].reshape(g, k)
    else:
        rows, new_tok = np.zeros((g, k), np.int64), np.full((g, k), eos, np.int64)
        new_scores = np.full((g, k), -np.inf)
        slot = (np.nonzero(taken)[0], before[taken])                  # (search, slot) of each taken one
        rows[slot], new_tok[slot], new_scores[slot] = src[taken], tok[taken], score[taken]
    if rank is not None:                # sampled beams: each slot draws its own noise, so slots keep rank order
        return rows, new_tok, new_scores
    at = (np.arange(g)[:, None], _stay_in_place(rows))
    return rows[at], new_tok[at], new_scores[at]


def _stay_in_place(rows: np.ndarray) -> np.ndarray:
    """A permutation of each search's K new beams (G, K) -> (G, K) that keeps the first child of every row in that
    row's slot, so that a reorder copies only the other children (the cache moves rows, and each row is a few
    hundred KB). Beams are a set: their slots carry no rank."""
    g, k = rows.shape
    if g == 1:                                          # one search (one prompt): a few list operations
        return np.array([_one_in_place(rows[0].tolist())])
    later = np.triu(np.ones((k, k), bool), 1)                            # [i, j]: i before j
    first = ~((rows[:, :, None] == rows[:, None, :]) & later).any(axis=1)  # (G, K) no earlier beam has its row
    occupied = np.zeros((g, k), bool)
    occupied[np.nonzero(first)[0], rows[first]] = True                  # slots the first children keep
    slot = np.empty((g, k), np.int64)                                   # slot[g, j]: where new beam j goes
    np.put_along_axis(slot, np.argsort(first, axis=1, kind="stable"),   # the others, in order, to the free slots
                      np.argsort(occupied, axis=1, kind="stable"), axis=1)
    slot[first] = rows[first]
    order = np.empty_like(slot)
    np.put_along_axis(order, slot, np.arange(k)[None, :].repeat(g, axis=0), axis=1)
    return order                                                        # order[g, s]: the beam in slot s


def _one_in_place(rows: list[int]) -> list[int]:
    """_stay_in_place for one search: the beam in each slot."""
    order: list[int | None] = [None] * len(rows)
    movers = []
    for j, r in enumerate(rows):
        if order[r] is None:                            # the first child of row r stays in its slot
            order[r] = j
        else:
            movers.append(j)
    free = (s for s, j in enumerate(order) if j is None)
    for j in movers:
        order[next(free)] = j
    return order


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
    # one draw for all rows, in row-major order: row by row, each row's set a prefix (best first) or, with no
    # top-k/top-p, vocab order; the stream is the same as one draw per row
    keys[kept] += sampling.rng.gumbel(size=int(kept.sum()))
    return ids, cand, keys


def _best_first(keys: np.ndarray, m: int) -> np.ndarray:
    """Indices of the m largest keys of each row (G, N) -> (G, m), largest first (equal keys among those taken
    in index order)."""
    if keys.shape[1] > 4 * m:
        part = np.argpartition(-keys, m, axis=1)[:, :m]
        part.sort(axis=1)
        return np.take_along_axis(part, np.argsort(-np.take_along_axis(keys, part, axis=1), axis=1, kind="stable"),
                                  axis=1)
    return np.argsort(-keys, axis=1, kind="stable")[:, :m]
