"""Logit processors and token pickers: pure numpy functions of (tokens, logits).

A processor is any callable `(tokens (N, T) int64, logits (N, V) float32) -> logits (N, V)`; `tokens` are the
target-side ids so far (starting with <sos>), one row per live hypothesis of one request. Processors may write into
`logits`. Two optional parts (see `LogitsProcessor`): `max_banned_ids`, how many ids it can ever ban (lets the loop
skip looking for rows left with nothing), and `reorder(rows)` for a processor that keeps per-row state (beam search
calls it whenever hypotheses move).
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

NEG = -np.inf


class LogitsProcessor(Protocol):
    """Required: the call. Optional: `max_banned_ids: int` (absent = may ban any number, even a whole row) and
    `reorder(rows: np.ndarray) -> None` (absent = stateless: it re-reads `tokens` each step)."""

    def __call__(self, tokens: np.ndarray, logits: np.ndarray) -> np.ndarray: ...


def apply_processors(processors: Sequence[LogitsProcessor], tokens: np.ndarray, logits: np.ndarray,
                     eos_id: int) -> np.ndarray:
    """Run the processors in order. A row they left with no allowed token at all ends (<eos>) instead of
    picking from nothing (checked only when the processors could empty a row: `could_empty_a_row`)."""
    for p in processors:
        logits = p(tokens, logits)
    if could_empty_a_row(processors, logits.shape[1]):
        end_empty_rows(logits, eos_id)
    return logits


def end_empty_rows(logits: np.ndarray, eos_id: int) -> None:
    """Rows (N, V) with no allowed token at all get <eos> instead (in place)."""
    dead = logits.max(axis=1) == -np.inf          # (N,) cheaper than isfinite over the whole row
    if dead.any():
        logits[dead, eos_id] = 0.0


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


class SuppressTokens:
    """Never emit these ids (<pad>, <sos>, <unk>, prompt-kind tokens)."""

    def __init__(self, ids: Sequence[int]):
        self.ids = np.asarray(sorted(set(ids)), np.int64)
        self.max_banned_ids = len(self.ids)          # could_empty_a_row

    def __call__(self, tokens: np.ndarray, logits: np.ndarray) -> np.ndarray:
        logits[:, self.ids] = NEG
        return logits


class MinNewTokens:
    """transformers' min_new_tokens: no <eos> before `min_new` tokens follow the first `prefix_len` ids of a row."""

    max_banned_ids = 1           # could_empty_a_row

    def __init__(self, min_new: int, eos_id: int, prefix_len: int):
        self.min_new, self.eos_id, self.prefix_len = int(min_new), int(eos_id), int(prefix_len)

    def __call__(self, tokens: np.ndarray, logits: np.ndarray) -> np.ndarray:
        if tokens.shape[1] - self.prefix_len < self.min_new:
            logits[:, self.eos_id] = NEG
        return logits


class RepetitionPenalty:
    """CTRL-style: divide positive logits (multiply negative ones) of already generated tokens by `penalty`."""

    max_banned_ids = 0           # rescales finite logits, bans nothing

    def __init__(self, penalty: float, ignore_ids: Sequence[int] = ()):
        self.penalty = float(penalty)
        self.ignore = np.asarray(list(ignore_ids), np.int64)
        self._counts: np.ndarray | None = None       # (V,) bool: ids the penalty applies to, built on first use

    def __call__(self, tokens: np.ndarray, logits: np.ndarray) -> np.ndarray:
        counts = self._counts
        if counts is None or len(counts) != logits.shape[1]:
            counts = np.ones(logits.shape[1], bool)
            counts[self.ignore] = False
            self._counts = counts
        penalised = counts[tokens]                                              # (N, T)
        rows, ids = np.nonzero(penalised)[0], tokens[penalised]     # an id seen twice is set twice, to one value
        seen = logits[rows, ids]
        logits[rows, ids] = np.where(seen > 0, seen / self.penalty, seen * self.penalty)
        return logits


class NoRepeatNGram:
    """Ban any token that would repeat an n-gram already present in the row."""

    def __init__(self, n: int):
        self.n = int(n)

    def __call__(self, tokens: np.ndarray, logits: np.ndarray) -> np.ndarray:
        n, t = self.n, tokens.shape[1]
        if t + 1 < n:
            return logits
        for row in range(tokens.shape[0]):
            seq = tokens[row].tolist()
            prefix = tuple(seq[t - n + 1:]) if n > 1 else ()
            banned = [seq[i + n - 1] for i in range(t - n + 1) if tuple(seq[i:i + n - 1]) == prefix]
            if banned:
                logits[row, banned] = NEG
        return logits


# ---------------------------------------------------------------- sampling warpers

def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    return logits / np.float32(temperature) if temperature != 1.0 else logits


def apply_top_k(logits: np.ndarray, k: int) -> np.ndarray:
    if k <= 0 or k >= logits.shape[1]:
        return logits
    kth = np.partition(logits, -k, axis=1)[:, -k][:, None]
    return np.where(logits < kth, NEG, logits)


def apply_top_p(logits: np.ndarray, p: float) -> np.ndarray:
    """Keep the smallest set of tokens whose probability mass reaches p (always at least the best one)."""
    if p >= 1.0:
        return logits
    order = np.argsort(-logits, axis=1)
    sorted_logits = np.take_along_axis(logits, order, axis=1)
    probs = softmax(sorted_logits.astype(np.float64))
    cum = np.cumsum(probs, axis=1)
    drop_sorted = (cum - probs) >= p                  # mass before this token already reaches p
    drop = np.zeros_like(drop_sorted)
    np.put_along_axis(drop, order, drop_sorted, axis=1)
    return np.where(drop, NEG, logits)


# ---------------------------------------------------------------- pickers

def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    return logits - logsumexp(logits)


def logsumexp(logits: np.ndarray) -> np.ndarray:
    """(N, V) -> (N, 1) log of each row's softmax denominator; rows need at least one finite value."""
    top = logits.max(axis=1, keepdims=True)
    shifted = np.subtract(logits, top)                 # one temporary, exponentiated in place
    np.exp(shifted, out=shifted)
    return top + np.log(shifted.sum(axis=1, keepdims=True))


def top_ids(x: np.ndarray, m: int) -> np.ndarray:
    """Ids of the m largest values of each row, in no particular order (ties at the boundary broken arbitrarily).
    (N, V) -> (N, m). A vocab-sized argpartition costs ~50 us a row; instead a strided sample of the row gives a
    threshold that at least m values reach (the sample's own m largest do), and only the few values above it are
    partitioned: exact, and about twice as fast for a top-k of tens. For m <= 16, m argmax passes."""
    n, v = x.shape
    m = min(m, v)
    if m <= 16:                            # beam search's 2K: m argmax passes are cheaper still
        return _top_ids_by_argmax(x, m)
    stride = int(np.sqrt(v / m))           # balances the sample's size (V/stride) and the candidates' (~m*stride)
    if stride < 2:
        return np.argpartition(x, -m, axis=1)[:, -m:]
    sample = x[:, ::stride]                                                     # (N, ~V/stride)
    threshold = np.partition(sample, -m, axis=1)[:, -m]                         # (N,)
    out = np.empty((n, m), np.int64)
    for row, limit in enumerate(threshold.tolist()):    # array methods, not np.* wrappers: this loop is hot
        values = x[row]
        if limit == -np.inf:            # a row a processor narrowed to a few tokens: its finite ids, padded with
            cand = (values > -np.inf).nonzero()[0]                              # banned ones, not the whole vocab
            if len(cand) < m:
                cand = np.concatenate([cand, (values == -np.inf).nonzero()[0][:m - len(cand)]])
        else:
            cand = (values >= limit).nonzero()[0]                               # >= m ids
        out[row] = cand[values[cand].argpartition(-m)[-m:]] if len(cand) > m else cand
    return out


def _top_ids_by_argmax(x: np.ndarray, m: int) -> np.ndarray:
    work, rows = x.copy(), np.arange(len(x))
    out = np.empty((len(x), m), np.int64)
    for j in range(m):
        out[:, j] = work.argmax(axis=1)
        work[rows, out[:, j]] = -np.inf
    repeated = (np.diff(np.sort(out, axis=1), axis=1) == 0).any(axis=1)   # rows with fewer than m finite values
    if repeated.any():
        out[repeated] = np.argpartition(x[repeated], -m, axis=1)[:, -m:]
    return out


def pick_greedy(logits: np.ndarray) -> np.ndarray:
    return logits.argmax(axis=1)                       # (N,)


def top_candidates(logits: np.ndarray, temperature: float, top_k: int, top_p: float,
                   probe: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The tokens that temperature + top-k + top-p leave, and their renormalised probabilities, computed on a
    short candidate list instead of sorting the whole vocab. -> ids (N, C), probs (N, C) (0 where dropped).
    Keeps exactly the set apply_top_p(apply_top_k(apply_temperature(...))) keeps, up to ties.
    Without top-k and top-p every token is a candidate, in vocab order (no sorting at all).
    Row by row: a row's candidates and probabilities do not depend on the other rows (so sampled requests can
    share one call); with top-p alone, a row whose top `probe` tokens hold p of the mass is cut there, the others
    take the whole vocab (their rows then padded with probability 0)."""
    x = apply_temperature(logits.astype(np.float32, copy=False), temperature)     # read only: no copy needed
    n, v = x.shape
    width = top_k if 0 < top_k < v else v
    if width == v and top_p >= 1.0:
        return np.broadcast_to(np.arange(v), (n, v)), softmax(x.astype(np.float64))
    if top_p < 1.0 and width == v and probe < v:
        log_norm = logsumexp(x.astype(np.float64))                                 # (N, 1)
        probe_ids = top_ids(x, probe)
        held = np.exp(np.take_along_axis(x, probe_ids, axis=1) - log_norm).sum(axis=1) >= top_p   # (N,)
        if held.all():
            return _candidates(x, probe_ids, top_p, log_norm)
        if held.any():                      # rows of both kinds: each kind as it would be alone
            ids, probs = np.zeros((n, v), np.int64), np.zeros((n, v))
            short = _candidates(x[held], probe_ids[held], top_p, log_norm[held])
            ids[held, :probe], probs[held, :probe] = short
            ids[~held], probs[~held] = _candidates(x[~held], np.broadcast_to(np.arange(v), (int((~held).sum()), v)),
                                                   top_p)
            return ids, probs
    ids = top_ids(x, width) if width < v else np.broadcast_to(np.arange(v), (n, v))
    return _candidates(x, ids, top_p)


def _candidates(x: np.ndarray, ids: np.ndarray, top_p: float, log_norm: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """ids (N, C) -> the same ids best first and their probabilities after top-p, renormalised. With `log_norm`
    (N, 1), the log of each row's whole-vocab softmax denominator, probabilities are taken against it."""
    vals = np.take_along_axis(x, ids, axis=1).astype(np.float64)
    order = np.argsort(-vals, axis=1)                                          # best first
    ids, vals = np.take_along_axis(ids, order, axis=1), np.take_along_axis(vals, order, axis=1)
    probs = np.exp(vals - log_norm) if log_norm is not None else softmax(vals)
    if top_p < 1.0:
        probs = np.where(np.cumsum(probs, axis=1) - probs >= top_p, 0.0, probs)
    return ids, probs / probs.sum(axis=1, keepdims=True)


class Sampler:
    """Picker drawing one token per row from the warped distribution, reproducible through `rng`: one Generator
    for all rows, or one per row (then a row's draws never depend on the other rows of the batch). Samplers with
    per-row streams and the same `key` (temperature, top-k, top-p) can pick for several requests' rows in one
    call (`sample_rows`)."""

    def __init__(self, rng: np.random.Generator | Sequence[np.random.Generator], temperature: float, top_k: int,
                 top_p: float):
        self.rng, self.temperature, self.top_k, self.top_p = rng, temperature, top_k, top_p
        self.per_row = not isinstance(rng, np.random.Generator)
        self.key = (temperature, top_k, top_p) if self.per_row else None

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        return sample_rows([self], logits)

    def draws(self, rows: int) -> np.ndarray:
        """(rows,) uniform draws in [0, 1), one per row."""
        if not self.per_row:
            return self.rng.random(rows)
        if len(self.rng) != rows:
            raise ValueError(f"{len(self.rng)} random streams for {rows} rows")
        return np.array([g.random() for g in self.rng])


def make_sampler(rng: np.random.Generator | Sequence[np.random.Generator], temperature: float, top_k: int,
                 top_p: float) -> Sampler:
    return Sampler(rng, temperature, top_k, top_p)


def sample_rows(samplers: Sequence[Sampler], logits: np.ndarray) -> np.ndarray:
    """(sum R, V) -> (sum R,) ids: each sampler draws for its own consecutive rows (R each: its streams), from
    candidates found in one pass for all rows; every sampler must have the first one's temperature, top-k and
    top-p."""
    first = samplers[0]
    ids, probs = top_candidates(logits, first.temperature, first.top_k, first.top_p)
    cum = np.cumsum(probs, axis=1)
    if len(samplers) == 1:
        draws = first.draws(len(probs))
    else:
        draws = np.concatenate([s.draws(len(s.rng)) for s in samplers])
        if len(draws) != len(probs):
            raise ValueError(f"{len(draws)} random streams for {len(probs)} rows")
    u = draws[:, None] * cum[:, -1:]        # < total mass: never lands on a dropped tail token
    choice = np.minimum((cum <= u).sum(axis=1), probs.shape[1] - 1)
    return ids[np.arange(len(ids)), choice]


# ---------------------------------------------------------------- verse-aware repetition control

def _current_verse(row: list[int], breaks: frozenset[int], start: int) -> tuple[list[int], list[list[int]]]:
    """Split a row's generated ids (from `start`) at verse breaks -> (current partial verse, finished verses)."""
    verses, current = [], []
    for tok in row[start:]:
        if tok in breaks:
            if current:
                verses.append(current)
            current = []
        else:
            current.append(tok)
    return current, verses


class VerseRepetitionBlock:
    """Repetition rules that read a poem as verses (the text between line punctuation):

    - `max_char_repeats`: no character appears more than this many times in one verse (2 keeps 叠字 such as
      萧萧 and a repeated word, and forbids 登高高高高);
    - `no_repeat_verse`: a verse never repeats an earlier verse of the poem, character for character: the last
      character that would complete a copy is banned, and so is the break right after a copy (for verses of
      other lengths); nor is a verse empty: no break opens the poem or follows another.

    Stateless between steps (it re-reads `tokens`), so beam search may reorder rows freely. `start` is the column
    where generated text begins (1: after <sos>); forced continue-mode text counts as part of the poem."""

    def __init__(self, break_ids: Sequence[int], max_char_repeats: int = 2, no_repeat_verse: bool = True,
                 start: int = 1):
        self.breaks = frozenset(int(i) for i in break_ids)
        self.break_ids = np.asarray(sorted(self.breaks), np.int64)
        self.max_repeats, self.no_repeat_verse, self.start = int(max_char_repeats), bool(no_repeat_verse), start

    def __call__(self, tokens: np.ndarray, logits: np.ndarray) -> np.ndarray:
        for r, row in enumerate(tokens.tolist()):
            current, verses = _current_verse(row, self.breaks, self.start)
            if self.max_repeats > 0 and len(current) >= self.max_repeats:
                counts: dict[int, int] = {}
                for tok in current:
                    counts[tok] = counts.get(tok, 0) + 1
                full = [tok for tok, c in counts.items() if c >= self.max_repeats]
                if full:
                    logits[r, full] = NEG
            if self.no_repeat_verse and not current:
                logits[r, self.break_ids] = NEG
            if self.no_repeat_verse and verses:
                n = len(current)
                completing = {v[n] for v in verses if len(v) == n + 1 and v[:n] == current}
                if completing:
                    logits[r, list(completing)] = NEG
                if current and any(v == current for v in verses):
                    logits[r, self.break_ids] = NEG
        return logits
