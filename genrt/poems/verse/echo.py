"""Two habits of the model that readers notice and poets avoid, as logits processors:

- `VerseOpenings`: the same character opening verse after verse (山居… 山中… 山下…); a character may open at most
  `max_openings` verses of a poem (real poems: 1 % have one character opening three or more).
- `TitleEcho`: the title copied into the body again and again (夜泊夜泊舟); each two-character piece of the title may
  appear at most `max_echoes` times in the poem (real poems: 13 % echo one once, 1 % twice or more).

Both are stateless: each step they re-read a row's ids (from column `start`, after <sos>), so beams may move freely.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from genrt.decoding.processors import NEG


class VerseOpenings:
    """At the start of a verse (the poem's start, or right after a verse break), ban every character that already
    opened `max_openings` verses."""

    def __init__(self, break_ids: Sequence[int], max_openings: int = 2, start: int = 1):
        self.breaks = frozenset(int(i) for i in break_ids)
        self.max_openings, self.start = int(max_openings), start

    def __call__(self, tokens: np.ndarray, logits: np.ndarray) -> np.ndarray:
        if tokens.shape[1] > self.start and not self.breaks.intersection(tokens[:, -1].tolist()):
            return logits                                      # no row stands at a verse start
        for r, row in enumerate(tokens[:, self.start:].tolist()):
            if row and row[-1] not in self.breaks:
                continue
            counts: dict[int, int] = {}
            for prev, tok in zip([None] + row[:-1], row):
                if prev is None or prev in self.breaks:
                    counts[tok] = counts.get(tok, 0) + 1
            full = [tok for tok, n in counts.items() if n >= self.max_openings and tok not in self.breaks]
            if full:
                logits[r, full] = NEG
        return logits


class TitleEcho:
    """Ban the character that would complete a two-character piece of the title (ids `title_ids`, in order) once
    that piece already appears `max_echoes` times in the poem."""

    def __init__(self, title_ids: Sequence[int], max_echoes: int = 1, start: int = 1):
        self.max_echoes, self.start = int(max_echoes), start
        self.follows: dict[int, set[int]] = {}                 # first id of a title bigram -> its second ids
        for a, b in zip(title_ids, title_ids[1:]):
            self.follows.setdefault(int(a), set()).add(int(b))
        self.max_banned_ids = max((len(v) for v in self.follows.values()), default=0)

    def __call__(self, tokens: np.ndarray, logits: np.ndarray) -> np.ndarray:
        if not self.follows or tokens.shape[1] <= self.start:
            return logits
        for r, row in enumerate(tokens[:, self.start:].tolist()):
            seconds = self.follows.get(row[-1])
            if not seconds:
                continue
            pairs = list(zip(row, row[1:]))
            banned = [b for b in seconds if pairs.count((row[-1], b)) >= self.max_echoes]
            if banned:
                logits[r, banned] = NEG
        return logits
