"""平仄 and 平水韵 (genrt.poems.verse.tonal): line patterns, the checker on handcrafted and real lines, the processor's
allowed sets, decoding every form with greedy, beam and sampling, and impossible requests."""
from __future__ import annotations

import numpy as np
import pytest

from genrt.poems.verse.forms import FORMS, FormConstraint, check_request, well_formed
from genrt.poems.options import GenerationOptions
from genrt.poems.verse.pingshui import PING, ZE, PingshuiTable
from genrt.poems.verse.tonal import (
    TonalConstraint, VerseRules, line_fault, line_pattern, line_variants, matching_patterns, patterns,
    pingshui_rhyme_problem, tonal_problem,
)
from genrt.contract import SPECIAL_TOKENS
from genrt.poems.tokenizer import CharTokenizer
from tests.test_poems_verse_forms import HAN as FORM_HAN
from tests.test_poems_verse_forms import decode as decode_with_random_logits

# test_forms' characters, the poems below, and a few without a reading (它 is not in 平水韵)
HAN = "".join(dict.fromkeys(FORM_HAN + "白日依山尽黄河入海流欲穷千里目更上一层楼看它"))
VOCAB = list(SPECIAL_TOKENS) + list("，。") + list(HAN)
TOK = CharTokenizer(VOCAB)

TABLE = PingshuiTable.load()
DENGGUANQUE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"           # 五绝, 仄起首句不入韵
CHUNWANG = "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。"
ZAOFA = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"       # 七绝, 平起首句入韵
JINGYESI = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"                  # 古绝: not regulated


# ---------------------------------------------------------------- patterns

def test_line_types_and_their_seven_character_forms():
    assert [line_pattern(k, 5) for k in "ABCD"] == ["仄仄平平仄", "平平仄仄平", "平平平仄仄", "仄仄仄平平"]
    assert [line_pattern(k, 7) for k in "ABCD"] == ["平平仄仄平平仄", "仄仄平平仄仄平", "仄仄平平平仄仄", "平平仄仄仄平平"]


@pytest.mark.parametrize("kind, tones, fault", [
    ("B", "仄平仄仄平", "孤平"), ("B", "仄仄仄平仄仄平", "孤平"), ("B", "平仄仄平仄仄平", "孤平"),
    ("D", "仄仄平平平", "三平尾"), ("D", "平平仄平平平", "三平尾"), ("C", "平平仄仄仄", "三仄尾"),
    ("C", "仄仄平仄仄仄", "三仄尾"), ("B", "平平平仄平", None), ("A", "仄仄仄平仄", None), ("D", "平仄仄平平", None),
])
def test_line_faults(kind, tones, fault):
    assert line_fault(kind, tones) == fault


def test_line_variants_keep_the_even_positions_and_the_last_character():
    assert line_variants("B", 5) == ("平平平仄平", "平平仄仄平")
    assert line_variants("C", 5) == ("平平平仄仄", "仄平平仄仄")
    assert line_variants("D", 5) == ("平仄仄平平", "仄仄仄平平")
    assert len(line_variants("A", 5)) == 4 and len(line_variants("A", 7)) == 8
    for kind in "ABCD":
        for length in (5, 7):
            strict = line_pattern(kind, length)
            for v in line_variants(kind, length):
                assert all(v[i] == strict[i] for i in range(1, length, 2)) and v[-1] == strict[-1]


@pytest.mark.parametrize("lines, length", [(4, 5), (4, 7), (8, 5), (8, 7)])
def test_every_pattern_keeps_nian_and_dui_and_ends_rhyming_lines_on_ping(lines, length):
    for pat in patterns(lines, length):
        tones = pat.lines()
        for i in range(0, lines, 2):
            assert tones[i][1] != tones[i + 1][1]                                  # 对 inside a couplet
            if i:
                assert tones[i][1] == tones[i - 1][1]                              # 粘 between couplets
        for i, line in enumerate(tones):
            assert (line[-1] == PING) == pat.rhymes(i)
    names = [p.name for p in patterns(lines, length)]
    assert len(set(names)) == 4


# ---------------------------------------------------------------- the checker

def test_real_regulated_poems_pass_and_name_their_pattern():
    assert tonal_problem(DENGGUANQUE, "五言绝句") is None
    assert matching_patterns(DENGGUANQUE, "五言绝句") == ["仄起首句不入韵"]
    assert tonal_problem(CHUNWANG, "五言律诗") is None
    assert tonal_problem(ZAOFA, "七言绝句") is None
    assert "平起首句入韵" in matching_patterns(ZAOFA, "七言绝句")


def test_the_checker_names_the_character_that_breaks_the_pattern():
    problem = tonal_problem(JINGYESI, "五言绝句")
    assert problem.startswith("line 2, character 4: '上' is 仄; the pattern needs 平"), problem
    # 孤平: 黄河入海流 -> 仄河入海流 (入 stays; first character 仄): 日 is 仄 only
    assert "line 2, character 1" in tonal_problem(DENGGUANQUE.replace("黄河", "日河"), "五言绝句")
    assert "三平尾" not in (tonal_problem(DENGGUANQUE, "五言绝句") or "")


def test_rhyme_feet_must_share_one_ping_group():
    broken = DENGGUANQUE.replace("楼", "山")                                    # 流 (尤) / 山 (删)
    assert "in 尤" in tonal_problem(broken, "五言绝句")
    assert pingshui_rhyme_problem(DENGGUANQUE, "五言绝句") is None
    assert "in 尤" in pingshui_rhyme_problem(broken, "五言绝句")
    assert "not in 平水韵" in pingshui_rhyme_problem(DENGGUANQUE.replace("楼", "它"), None, "白黄欲更")


def test_a_polyphonic_character_fits_either_reading():
    assert TABLE.tones("看") == {PING, ZE}
    assert tonal_problem("看日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "五言绝句") is None
    assert tonal_problem("白看依山尽，黄河入海流。欲穷千里目，更上一层楼。", "五言绝句") is None


def test_shape_problems_come_first():
    assert "line 1 has 4 characters" in tonal_problem("白日依山，黄河入海流。", "五言绝句")


# ---------------------------------------------------------------- requests

@pytest.mark.parametrize("kwargs, message", [
    ({"tonal": True}, r"tonal \(平仄\) needs a form"),
    ({"form": "wujue", "tonal": True, "rhyme": "modern"}, "tonal verse rhymes in 平水韵"),
    ({"form": "wujue", "tonal": True, "acrostic": "一七一一"}, "fits no tonal pattern"),
    ({"form": "wujue", "tonal": True, "acrostic": "春♪"}, "acrostic must be Han characters"),
    ({"form": "wujue", "tonal": True, "acrostic": "春它"}, "它: no reading"),
    ({"form": "wujue", "rhyme": "classical"}, "rhyme must be one of modern, pingshui"),
    ({"rhyme": "pingshui"}, "rhyme needs a form or an acrostic"),
])
def test_impossible_requests_are_one_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GenerationOptions.from_kwargs(**kwargs)


def test_rhyme_schemes():
    assert GenerationOptions.from_kwargs(form="wujue", rhyme=True).rhyme_scheme == "modern"
    assert GenerationOptions.from_kwargs(form="wujue", tonal=True).rhyme_scheme == "pingshui"
    assert GenerationOptions.from_kwargs(form="wujue", rhyme="pingshui").rhyme_scheme == "pingshui"
    assert GenerationOptions.from_kwargs(form="wujue").rhyme_scheme is None
    check_request("qilv", "春江花月", "pingshui", True)


# ---------------------------------------------------------------- the processor

def allowed(constraint, body: str) -> set[str]:
    tokens = np.array([[TOK.sos_id] + TOK.encode_text(body)], np.int64)                     # (1, T)
    logits = constraint(tokens, np.zeros((1, len(VOCAB)), np.float32))
    return {VOCAB[i] for i in np.flatnonzero(np.isfinite(logits[0]))}


def test_allowed_tones_follow_the_surviving_patterns():
    c = TonalConstraint(TOK, "wujue")
    assert allowed(c, "") == {ch for ch in HAN if TABLE.tones(ch)}        # the first character is free
    after_bai = allowed(c, "白")                                          # 白 仄: 2nd character 仄 (A, D) or 平 (C)
    assert after_bai == {ch for ch in HAN if TABLE.tones(ch)}
    second_ping = allowed(c, "白云")                                      # 云 平 -> C 平平平仄仄 / B: 平平
    assert second_ping == {ch for ch in HAN if PING in TABLE.tones(ch)}
    # the first rhyme foot: a 平 character of a group with enough characters in the vocabulary for the others
    assert allowed(c, "白日依山尽，黄河入海") == {ch for ch in HAN if TABLE.ping_mask(ch) & c._viable}
    assert {ch for ch in HAN if TABLE.ping_mask(ch)} > allowed(c, "白日依山尽，黄河入海")


def test_rhyme_feet_bind_one_group():
    c = TonalConstraint(TOK, "wujue")
    body = "白日依山尽，黄河入海流。欲穷千里目，更上一层"
    you = TABLE.ping_mask("流")
    assert allowed(c, body) == {ch for ch in HAN if TABLE.ping_mask(ch) & you}
    rhyme_only = TonalConstraint(TOK, "wujue", tonal=False)
    assert allowed(rhyme_only, "白日依山") == set(VOCAB)                  # no tones: nothing restricted
    assert allowed(rhyme_only, body) == {ch for ch in HAN if TABLE.ping_mask(ch) & you}


def test_processor_agrees_with_the_checker_along_random_poems():
    rng = np.random.default_rng(0)
    for form in FORMS:
        c, rules = TonalConstraint(TOK, form), VerseRules(form, None, True)
        body = ""
        while not well_formed(body, form) and len(body) < 70:
            options = sorted(allowed(c, body) - {"<eos>"})
            fc = allowed(FormConstraint(TOK, form), body)
            options = [ch for ch in options if ch in fc]
            marks = [ch for ch in options if ch in "，。"]
            if marks:
                body += marks[0]
                continue
            for ch in rng.permutation(list(HAN))[:20]:                   # the processor's verdict = the rules'
                state = rules.start()
                for x in body + ch:
                    state = rules.advance(state, x)
                if ch in options:
                    assert state.paths
                elif state.paths:                # only a first rhyme foot in a group too small to rhyme on
                    assert TABLE.ping_mask(ch) and not TABLE.ping_mask(ch) & c._viable, (body, ch)
            body += str(rng.choice(options))
        assert tonal_problem(body, form) is None, body


def test_a_forced_first_line_must_fit_a_pattern():
    c = TonalConstraint(TOK, "wujue")
    c.check_prefix([TOK.sos_id] + TOK.encode_text("白日依山尽，"))
    c.check_prefix(TOK.encode_text("白光依"))                         # 仄平平: C's variant 仄平平仄仄
    with pytest.raises(ValueError, match="does not fit the tonal pattern: line 1, character 4: '目' is 仄"):
        c.check_prefix(TOK.encode_text("白日依目"))                   # 2nd and 4th of one tone


def decode(constraint, rows: int = 3, beams: int = 1, sample: bool = False) -> list[str]:
    return decode_with_random_logits(constraint, rows=rows, beams=beams, sample=sample, tok=TOK)


class Both:
    """FormConstraint then TonalConstraint, as GenerationOptions builds them."""

    def __init__(self, form, acrostic=None, tonal=True, only=None):
        self.parts = [FormConstraint(TOK, form, acrostic), TonalConstraint(TOK, form, acrostic, tonal, only=only)]
        self.max_tokens = self.parts[0].max_tokens

    def __call__(self, tokens, logits):
        for p in self.parts:
            logits = p(tokens, logits)
        return logits


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("search", ["greedy", "beam", "sample"])
def test_every_form_and_search_gives_conforming_poems(form, search):
    rows = 2 if search == "beam" else 12
    poems = decode(Both(form), rows=rows, beams=3 if search == "beam" else 1, sample=search == "sample")
    for poem in poems:
        assert tonal_problem(poem, form) is None, poem
    if search == "sample":                                  # random logits reach more than one pattern
        assert len({name for p in poems for name in matching_patterns(p, form)}) >= 2


PATTERN_NAMES = ["仄起首句不入韵", "仄起首句入韵", "平起首句不入韵", "平起首句入韵"]


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("pattern", PATTERN_NAMES)
@pytest.mark.parametrize("search", ["greedy", "beam", "sample"])
def test_every_form_pattern_and_search_conforms(form, pattern, search):
    poems = decode(Both(form, only=[pattern]), rows=2, beams=2 if search == "beam" else 1, sample=search == "sample")
    for poem in poems:
        assert tonal_problem(poem, form) is None, poem
        assert pattern in matching_patterns(poem, form), (pattern, poem, matching_patterns(poem, form))


def test_unknown_pattern_is_refused():
    with pytest.raises(ValueError, match="unknown tonal pattern"):
        TonalConstraint(TOK, "wujue", only=["平起"])


def test_acrostic_with_tones_and_rhyme_only_decoding():
    for poem in decode(Both("qijue", "春江花月"), rows=4, sample=True):
        assert tonal_problem(poem, "qijue", "春江花月") is None, poem
    for poem in decode(Both("wulv", None, tonal=False), rows=4, sample=True):
        assert pingshui_rhyme_problem(poem, "wulv") is None, poem
