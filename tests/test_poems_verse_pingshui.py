"""The 平水韵 table (genrt.poems.verse.pingshui): readings, 多音字, simplified forms, coverage of the bundled vocabulary."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from genrt.poems.verse.pingshui import PING, ZE, PingshuiTable, vocab_tones

TABLE = PingshuiTable.load()


def test_the_table_has_the_106_groups_30_of_them_ping():
    assert len(TABLE.groups) == 106 and len(TABLE.ping_names) == 30
    assert TABLE.ping_names[:3] == ("东", "冬", "江") and TABLE.ping_names[-1] == "咸"
    assert "MIT" in TABLE.source


def test_readings_of_single_and_polyphonic_characters():
    assert TABLE.tones("东") == {PING} and TABLE.group_names(TABLE.ping_mask("东")) == "东"
    assert TABLE.tones("月") == {ZE} and TABLE.ping_mask("月") == 0          # 入声 counts as 仄
    assert TABLE.tones("看") == {PING, ZE}                                     # 多音字 fits either tone
    assert TABLE.group_names(TABLE.ping_mask("行")) == "阳/庚"                 # and every group it is in
    assert TABLE.tones("♪") == frozenset() and TABLE.ping_mask("♪") == 0


def test_simplified_and_traditional_forms_share_their_readings():
    for simple, traditional in (("钟", "鍾"), ("东", "東"), ("风", "風"), ("楼", "樓")):
        assert TABLE.tones(simple) == TABLE.tones(traditional) != frozenset()


def test_variant_forms_and_the_supplement_have_readings():
    assert TABLE.group_names(TABLE.ping_mask("溪")) == "齐"                     # listed as 谿
    assert TABLE.tones("沉") == {PING, ZE}                                     # listed as 沈
    assert TABLE.group_names(TABLE.ping_mask("啼")) == "齐"                     # the supplement


def test_marks():
    assert TABLE.marks("白日依山尽，") == "仄仄平平仄，"
    assert TABLE.marks("看♪") == "中?"


def test_bundled_vocabulary_coverage():
    vocab = json.loads((Path(__file__).parents[1] / "genrt/models/poems/manifest.json").read_text("utf-8"))["vocab"]
    han = [len(t) == 1 and "\u4e00" <= t <= "\u9fff" for t in vocab]
    tones = vocab_tones(tuple(vocab), tuple(han))
    covered = (tones.can_ping | tones.can_ze)[np.array(han)].mean()
    assert covered > 0.83                                                      # measured 0.836 of 8,398
    assert not (tones.can_ping | tones.can_ze)[~np.array(han)].any()           # specials and marks: no tone
    assert ((tones.ping_mask != 0) == tones.can_ping).all()
