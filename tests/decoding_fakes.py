"""A fake step model for decoding tests: next-token logits are a seeded hash of a row's whole prefix, so rows are
independent by construction and every search can be checked against brute force."""
import numpy as np

EOS, V = 2, 6


class TableModel:
    """start / step / reorder / join over a cache that is one tuple of ids per row (rows of any length)."""

    def __init__(self, seed=0, vocab=V):
        self.seed, self.vocab = seed, vocab
        self.calls = 0
        self.rows_per_call = []

    def start(self, sources, copies=1):
        counts = [copies] * len(sources) if np.isscalar(copies) else list(copies)
        return [(tuple(src),) for src, n in zip(sources, counts) for _ in range(n)]

    def logits_for(self, prefix, source=()):
        rng = np.random.default_rng(abs(hash((self.seed, tuple(source), tuple(prefix)))) % 2**32)
        return (rng.standard_normal(self.vocab) * 2).astype(np.float32)

    def step(self, tokens, cache):
        self.calls += 1
        self.rows_per_call.append(len(cache))
        cache = [row + tuple(int(t) for t in new) for row, new in zip(cache, tokens)]
        return np.stack([self.logits_for(row[1:], row[0]) for row in cache]), cache

    @staticmethod
    def reorder(cache, rows):
        return [cache[i] for i in rows]

    @staticmethod
    def join(first, second):
        return first + second


def sequence_logprob(model, tokens, source=(4,)):
    """Sum of log-probs of `tokens` (ending in EOS) after <sos>."""
    from genrt.decoding.processors import log_softmax
    prefix, total = [1], 0.0
    for t in tokens:
        total += float(log_softmax(model.logits_for(prefix, tuple(source))[None].astype(np.float64))[0, t])
        prefix.append(t)
    return total
