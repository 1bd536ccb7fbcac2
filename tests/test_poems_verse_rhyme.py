"""genrt.poems.verse.rhyme: the 14 modern rhyme groups from pypinyin finals."""
from __future__ import annotations

import numpy as np
import pytest

from genrt.poems.verse.rhyme import FINAL_TO_GROUP, RHYME_GROUPS, rhyme_group, rhyme_groups_of


def test_rhyme_groups_follow_the_documented_mapping():
    groups = {ch: RHYME_GROUPS[rhyme_group(ch)] for ch in "花歌街开飞高秋山心光风衣诗湖霜乡"}
    assert groups == {"花": "麻", "歌": "波", "街": "皆", "开": "开", "飞": "微", "高": "豪", "秋": "尤", "山": "寒",
                      "心": "文", "光": "唐", "风": "庚", "衣": "齐", "诗": "支", "湖": "姑", "霜": "唐", "乡": "唐"}
    assert rhyme_group("，") == -1 and rhyme_group("嗯") == -1


def test_groups_of_a_sequence_keep_one_entry_per_character():
    pytest.importorskip("pypinyin")
    chars = list("花，a诗雨")
    groups = rhyme_groups_of(chars)                                          # (5,) int64
    assert groups.dtype == np.int64 and groups.shape == (5,)
    assert groups.tolist() == [RHYME_GROUPS.index("麻"), -1, -1, RHYME_GROUPS.index("支"), RHYME_GROUPS.index("齐")]
    assert groups.tolist() == [rhyme_group(ch) for ch in chars]


def test_the_empty_i_after_retroflex_and_dental_initials_is_zhi():
    pytest.importorskip("pypinyin")
    assert {RHYME_GROUPS[rhyme_group(ch)] for ch in "知吃时日资词思"} == {"支"}     # zh ch sh r z c s + i
    assert {RHYME_GROUPS[rhyme_group(ch)] for ch in "衣齐西低居"} == {"齐"}         # i and ü after other initials


def test_every_group_but_zhi_has_its_finals():
    assert {RHYME_GROUPS[g] for g in FINAL_TO_GROUP.values()} == set(RHYME_GROUPS) - {"支"}
    assert FINAL_TO_GROUP["iang"] == FINAL_TO_GROUP["ang"] == RHYME_GROUPS.index("唐")
    assert FINAL_TO_GROUP["ong"] == RHYME_GROUPS.index("庚") and FINAL_TO_GROUP["v"] == RHYME_GROUPS.index("齐")
