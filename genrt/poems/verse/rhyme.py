"""Modern rhyme groups (押韵 for `rhyme=True` / 'modern'): a 中华新韵-like approximation, 14 groups, from each
character's most common modern reading (pypinyin finals, strict). 平水韵 lives in genrt.poems.verse.pingshui."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from genrt.contract import is_han

RHYME_GROUPS = ("麻", "波", "皆", "开", "微", "豪", "尤", "寒", "文", "唐", "庚", "齐", "支", "姑")
_FINALS = {
    "麻": "a ia ua", "波": "o e uo io", "皆": "ie ve", "开": "ai uai", "微": "ei uei", "豪": "ao iao",
    "尤": "ou iou", "寒": "an ian uan van", "文": "en in uen vn", "唐": "ang iang uang",
    "庚": "eng ing ueng ong iong", "齐": "i v er", "姑": "u",
}
FINAL_TO_GROUP = {final: RHYME_GROUPS.index(g) for g, finals in _FINALS.items() for final in finals.split()}
_ZHI_INITIALS = {"zh", "ch", "sh", "r", "z", "c", "s"}          # their 'i' is the 'empty' final of 支


def rhyme_groups_of(chars: Sequence[str]) -> np.ndarray:
    """Group index per character (-1 = none), from pypinyin's most common reading. (len(chars),) int64"""
    from pypinyin import Style, lazy_pinyin  # lazily: only rhyme needs it
    groups = np.full(len(chars), -1, np.int64)
    han = [i for i, ch in enumerate(chars) if is_han(ch)]
    words = [chars[i] for i in han]                  # a list: each character is read on its own, no phrases
    none = lambda x: [""] * len(x)                   # noqa: E731 -- keep one entry per unreadable character
    finals = lazy_pinyin(words, style=Style.FINALS, strict=True, errors=none)
    initials = lazy_pinyin(words, style=Style.INITIALS, strict=True, errors=none)
    if not len(finals) == len(initials) == len(words):  # never seen; be safe rather than misalign
        finals = [lazy_pinyin(w, style=Style.FINALS, strict=True, errors=none)[0] for w in words]
        initials = [lazy_pinyin(w, style=Style.INITIALS, strict=True, errors=none)[0] for w in words]
    for i, final, initial in zip(han, finals, initials):
        if final == "i" and initial in _ZHI_INITIALS:
            groups[i] = RHYME_GROUPS.index("支")
        else:
            groups[i] = FINAL_TO_GROUP.get(final, -1)
    return groups


@lru_cache(maxsize=8192)
def rhyme_group(ch: str) -> int:
    """Rhyme group index of one character, -1 = none."""
    return int(rhyme_groups_of([ch])[0])
