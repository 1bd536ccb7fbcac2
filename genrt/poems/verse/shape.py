"""A regular shape without naming a form: what `genrt poem TITLE` gets by default.

`RegularShape` is a LogitsProcessor that lets the model choose the form while keeping it regular: the first verse
has 5 or 7 characters (the model decides at the 5th), every later verse has the same length, odd verses end with
'，' and even ones with '。', and the poem may end only after 4 or 8 verses (a 绝句 or 律诗 shape, as `--form`
would give, see genrt.poems.verse.forms). A row whose forced text (continue mode) already breaks the shape is left free.
Stateless: each row's state is read from its tokens, so beam search may reorder rows.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from genrt.contract import VERSE_BREAKS
from genrt.poems.verse.forms import COMMA, FREE_LENGTHS, PERIOD, _vocab_tables
from genrt.decoding.processors import NEG  # a banned token's logit

POEM_LINES = (4, 8)


class RegularShape:
    def __init__(self, tokenizer, start: int = 1):
        vocab = tokenizer.vocab
        self.start = start
        self.han = _vocab_tables(tuple(vocab)).han                          # (V,) bool: may stand inside a verse
        self.comma, self.period, self.eos = tokenizer.index[COMMA], tokenizer.index[PERIOD], tokenizer.eos_id
        self.breaks = frozenset(i for i, tok in enumerate(vocab) if tok in VERSE_BREAKS)
        non_han = np.flatnonzero(~self.han)
        self.banned = {"han": non_han, "han_or_comma": np.setdiff1d(non_han, [self.comma]),
                       "han_or_eos": np.setdiff1d(non_han, [self.eos])}        # ids to ban, per state

    def __call__(self, tokens: np.ndarray, logits: np.ndarray) -> np.ndarray:
        for r, row in enumerate(tokens.tolist()):
            allowed = self._allowed(row[self.start:])
            if allowed is None:
                continue                                   # off the shape already (forced text): leave it free
            if isinstance(allowed, str):
                logits[r, self.banned[allowed]] = NEG
            else:
                keep = logits[r, allowed]
                logits[r] = NEG
                logits[r, allowed] = keep if np.isfinite(keep) else 0.0
        return logits

    def _allowed(self, body: Sequence[int]) -> str | int | None:
        """What may come next after `body`: "han", "han_or_comma", one id, or None (no constraint)."""
        verses, current = [], 0
        for tok in body:
            if tok in self.breaks:
                verses.append(current)
                current = 0
            elif self.han[tok]:
                current += 1
            else:
                return None
        if not verses:                                     # the first verse decides the length
            short, long = FREE_LENGTHS
            if current < short or short < current < long:
                return "han"
            if current == short:
                return "han_or_comma"
            return self.comma if current == long else None
        length = verses[0]
        if length not in FREE_LENGTHS or any(v != length for v in verses) or current > length:
            return None
        if current == length:
            return self.comma if len(verses) % 2 == 0 else self.period
        if current == 0 and len(verses) in POEM_LINES:
            return self.eos if len(verses) == max(POEM_LINES) else "han_or_eos"
        return "han"
