"""Regulated verse and acrostic constraints (genrt.poems.verse.forms): rules, the processor's allowed sets, decoding."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genrt.contract import EOS, SPECIAL_TOKENS
from genrt.poems.verse.forms import FORMS, FormConstraint, Rules, _walk, form_problem, rhyme_group, well_formed
from genrt.decoding.processors import SuppressTokens, make_sampler, pick_greedy
from genrt.poems.tokenizer import CharTokenizer

# Common characters of poems, covering all 14 rhyme groups (duplicates removed below).
HAN = "".join(dict.fromkeys(
    "春江花月夜山水风云日星辰天地人家国秋冬夏雨雪霜寒暑朝暮东西南北中上下来去归行"
    "明光空长高远清深青白红黄金玉石松竹梅兰菊柳桃李草木鸟鱼龙马牛羊衣香酒茶诗书琴棋画"
    "霞沙涯斜鸦华瓜多歌波河过罗坡阁落客鹤烟前边年连眠仙田船闲间还关颜残"
    "心林今吟音寻阴尘门魂村闻君群真身亲新声城情轻平生晴庭停灯蒙同钟"
    "乡阳墙凉航塘狂忙苍茫窗双楼愁流游舟头留休州悠求忧柔钩收"
    "桥遥潮摇萧箫飘宵迢老好早少晓道扫岛抱"
    "时知思丝池迟枝词辞师姿资持期依溪迷鸡泥啼齐稀飞微回辉晖杯催堆灰开台苔哀才埃怀"
    "湖图无孤壶途如初余居渔徐虚疏庐枯珠炉芦都苏除朱吴须愚"
    "别绝节叶结说谢些街鞋接蝶学觉约"
    "床前疑是举头望低故眠不处闻啼来声落知"))
VOCAB = list(SPECIAL_TOKENS) + list("，。？！") + list(HAN)
TOK = CharTokenizer(VOCAB)
JINGYESI = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
ALL_FORMS = list(FORMS)


def allowed(constraint: FormConstraint, body: str) -> set[str]:
    """Tokens the constraint allows after <sos> + body."""
    tokens = np.array([[TOK.sos_id] + TOK.encode_text(body)], np.int64)            # (1, T)
    logits = constraint(tokens, np.zeros((1, len(VOCAB)), np.float32))
    return {VOCAB[i] for i in np.flatnonzero(np.isfinite(logits[0]))}


def han_with_group(group: int | None = None) -> set[str]:
    return {ch for ch in HAN if (rhyme_group(ch) >= 0 if group is None else rhyme_group(ch) == group)}


# ---------------------------------------------------------------- checking decoded text

def test_well_formed_accepts_classics_and_names_problems():
    assert well_formed(JINGYESI, "wujue")
    assert well_formed(JINGYESI, "wujue", acrostic="床疑", rhyme=True)   # 霜/乡 rhyme (唐)
    assert well_formed(JINGYESI, acrostic="床疑举低")                    # free length, set by line 1
    assert form_problem(JINGYESI, "qijue") == "line 1 has 5 characters, expected 7"
    assert form_problem(JINGYESI.replace("光，", "光。"), "wujue") == "line 1 ends with '。', expected '，'"
    assert form_problem(JINGYESI[:-6], "wujue") == "the poem stops in line 4 of 4"
    assert form_problem(JINGYESI + "春", "wujue") == "text goes on after the last line: '春'"
    assert form_problem(JINGYESI, "wujue", acrostic="春") == "line 1 starts with '床', the acrostic needs '春'"
    assert "does not rhyme" in form_problem(JINGYESI.replace("乡", "心"), "wujue", rhyme=True)
    assert "not a Han character" in form_problem(JINGYESI.replace("月", "x", 1), "wujue")
    assert form_problem("床前明月光啊，疑是地上霜。", acrostic="床疑") == "line 1 has 6 characters; lines need 5 or 7"


# ---------------------------------------------------------------- the processor's allowed sets

def test_wujue_allows_exactly_the_next_legal_tokens():
    c = FormConstraint(TOK, "wujue")
    assert allowed(c, "") == set(HAN)
    assert allowed(c, "床前明月") == set(HAN)
    assert allowed(c, "床前明月光") == {"，"}
    assert allowed(c, "床前明月光，") == set(HAN)
    assert allowed(c, "床前明月光，疑是地上霜") == {"。"}
    assert allowed(c, JINGYESI[:-1]) == {"。"}
    assert allowed(c, JINGYESI) == {EOS}


def test_acrostic_forces_line_starts():
    c = FormConstraint(TOK, "qijue", acrostic="春江")
    assert allowed(c, "") == {"春"}
    assert allowed(c, "春" * 7 + "，") == {"江"}
    assert allowed(c, "春" * 7 + "，" + "江" * 7 + "。") == set(HAN)       # acrostic shorter than the form


def test_acrostic_without_form_lets_line_one_set_the_length():
    c = FormConstraint(TOK, None, acrostic="春江花")
    assert allowed(c, "春山") == set(HAN)
    assert allowed(c, "春山明月光") == set(HAN) | {"，"}
    assert allowed(c, "春山明月光照") == set(HAN)
    assert allowed(c, "春山明月光照水") == {"，"}
    assert allowed(c, "春山明月光，") == {"江"}
    assert allowed(c, "春山明月光，江上白云飞") == {"。"}
    assert allowed(c, "春山明月光照水，江上白云飞") == set(HAN)
    poem = "春山明月光，江上白云飞。花落知多少。"
    assert allowed(c, poem[:-1]) == {"。"} and allowed(c, poem) == {EOS}   # odd line count: last line ends '。'


def test_rhyme_binds_later_even_lines_to_the_second_lines_group():
    c = FormConstraint(TOK, "wulv", rhyme=True)
    line = "床前明月光，"
    assert allowed(c, line + "疑是地上") == han_with_group()
    assert allowed(c, line + "疑是地上霜。举头望明月，低头思故") == han_with_group(rhyme_group("霜"))
    assert allowed(c, line + "疑是地上诗。举头望明月，低头思故") == han_with_group(rhyme_group("诗"))
    assert allowed(c, line + "疑是地上霜。举头望明月，") == set(HAN)
    assert allowed(c, line + "疑是地上霜。举头望明") == set(HAN)               # odd lines end freely


def test_rows_in_different_states_get_their_own_sets():
    c = FormConstraint(TOK, None, acrostic="春江花", rhyme=True)
    rows = ["春山明月光，江上白云飞", "春山明月光照水，江上白"]                   # 5-char vs 7-char lines
    tokens = np.array([[TOK.sos_id] + TOK.encode_text(r) for r in rows], np.int64)           # (2, 12)
    logits = c(tokens, np.zeros((2, len(VOCAB)), np.float32))
    for row, body in zip(logits, rows):
        assert {VOCAB[i] for i in np.flatnonzero(np.isfinite(row))} == allowed(c, body)
    assert allowed(c, rows[0]) == {"。"} and allowed(c, rows[1]) == set(HAN)
    assert allowed(c, "春山明月光，江上白云") == han_with_group()


@pytest.mark.parametrize("form, acrostic, rhyme", [("wujue", "床疑", True), (None, "春江花月", True),
                                                   ("qilv", "春江花", False)])
def test_processor_agrees_with_the_reference_rules_along_random_poems(form, acrostic, rhyme):
    """At every step of a random poem the allowed set is exactly the characters the reference walk accepts."""
    c, rules = FormConstraint(TOK, form, acrostic, rhyme), Rules.of(form, acrostic, rhyme)
    rng = np.random.default_rng(3)
    body: list[str] = []
    while True:
        now = allowed(c, "".join(body))
        if now == {EOS}:
            break
        legal = {ch for ch in VOCAB[len(SPECIAL_TOKENS):] if _walk(body + [ch], rules, rhyme_group)[1] is None}
        assert now == legal, f"after {''.join(body)!r}"
        body.append(sorted(now)[rng.integers(len(now))])
    assert well_formed("".join(body), form, acrostic, rhyme)


def test_forced_tokens_survive_earlier_processors():
    c = FormConstraint(TOK, "wujue")
    tokens = np.array([[TOK.sos_id] + TOK.encode_text("床前明月光")], np.int64)
    logits = np.full((1, len(VOCAB)), -np.inf, np.float32)                # e.g. a no-repeat rule banned '，'
    out = c(tokens, logits)
    assert np.flatnonzero(np.isfinite(out[0])).tolist() == [TOK.index["，"]]


def test_rows_off_the_rules_are_sent_to_eos():
    c = FormConstraint(TOK, "wujue")
    allowed(c, "")                                                        # the first call checks rows in full
    tokens = np.array([[TOK.sos_id] + TOK.encode_text("床前明月光"),
                       [TOK.sos_id] + TOK.encode_text("床前明月") + [TOK.eos_id]], np.int64)   # a parked beam
    out = c(tokens, np.zeros((2, len(VOCAB)), np.float32))
    assert np.flatnonzero(np.isfinite(out[1])).tolist() == [TOK.eos_id] and c.off_form_rows == 1


# ---------------------------------------------------------------- vocab and prefix checks

def test_vocab_and_prefix_problems_are_named():
    with pytest.raises(ValueError, match="acrostic characters not in the model's vocabulary: 鑫犇"):
        FormConstraint(TOK, "wujue", acrostic="鑫春犇")
    with pytest.raises(ValueError, match="line marks ，。"):
        FormConstraint(CharTokenizer(list(SPECIAL_TOKENS) + list(HAN)), "wujue")
    with pytest.raises(ValueError, match="line 1 is longer than 5 characters"):
        FormConstraint(TOK, "wujue", prefix_ids=TOK.encode_text("床前明月光光"))
    with pytest.raises(ValueError, match="the acrostic needs '春'"):
        FormConstraint(TOK, "wujue", acrostic="春", prefix_ids=TOK.encode_text("床前明月光"))
    FormConstraint(TOK, "wujue", acrostic="床", prefix_ids=[TOK.sos_id] + TOK.encode_text("床前明月光，"))
    c = FormConstraint(TOK, "wujue")                                      # forced text not given upfront:
    with pytest.raises(ValueError, match="line 1 is longer than 5 characters"):   # the first call checks it
        allowed(c, "床前明月光光")


def test_pypinyin_is_imported_only_for_rhyme():
    script = ("import sys; from genrt.poems.tokenizer import CharTokenizer; from genrt.poems.verse.forms import "
              f"FormConstraint, well_formed; tok = CharTokenizer({VOCAB[:40]!r}); FormConstraint(tok, 'wujue', '春'); "
              f"well_formed({JINGYESI!r}, 'wujue'); assert 'pypinyin' not in sys.modules")
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", script], cwd=repo, check=True, timeout=60)


# ---------------------------------------------------------------- decoding with random logits

class RandomModel:
    """A step model (genrt.decoding.scheduler.StepModel) whose logits are noise: any structure in the output is the constraint's."""

    def __init__(self, seed: int = 0, vocab_size: int = len(VOCAB)):
        self.rng, self.vocab_size = np.random.default_rng(seed), vocab_size

    def start(self, sources, copies: int = 1):
        return None

    def step(self, tokens: np.ndarray, cache):
        return (3 * self.rng.standard_normal((tokens.shape[0], self.vocab_size))).astype(np.float32), cache

    def reorder(self, cache, rows):
        return cache

    def join(self, first, second):
        return None


def decode(constraint, prefix_body: str = "", rows: int = 3, beams: int = 1, sample: bool = False,
           tok: CharTokenizer = TOK) -> list[str]:
    """Decode with random logits under `constraint` (the vocabulary of `tok`); every row must finish."""
    from genrt.decoding.scheduler import decode as run
    from genrt.decoding.search import BeamSearch, SampleSearch
    suppress = SuppressTokens([tok.pad_id, tok.sos_id, tok.unk_id, 4, 5])
    forced = tok.encode_text(prefix_body)
    prefix = np.array([[tok.sos_id] + forced] * beams, np.int64)                             # (K, P) a request
    processors, max_new, model = [suppress, constraint], constraint.max_tokens, RandomModel(1, len(tok))
    if beams > 1:
        searches = [BeamSearch(prefix, max_new, tok.eos_id, processors) for _ in range(rows)]
    else:
        pick = make_sampler(np.random.default_rng(2), 1.0, 0, 1.0) if sample else pick_greedy
        searches = [SampleSearch(prefix, max_new, tok.eos_id, processors, pick) for _ in range(rows)]
    hyps = [h[0] for h in run(model, [[4]] * rows, searches)]
    assert all(h.finished for h in hyps)
    return [tok.decode(forced + h.tokens) for h in hyps]


@pytest.mark.parametrize("form", ALL_FORMS)
@pytest.mark.parametrize("sample", [False, True])
def test_greedy_and_sampling_give_well_formed_poems_for_every_form(form, sample):
    for acrostic, rhyme in ((None, False), ("春江花", True)):
        for poem in decode(FormConstraint(TOK, form, acrostic, rhyme), sample=sample):
            assert form_problem(poem, form, acrostic, rhyme) is None, poem


def test_acrostic_without_form_decodes_with_a_consistent_length():
    poems = decode(FormConstraint(TOK, None, "春江花月夜", True), rows=8, sample=True)
    assert all(well_formed(p, None, "春江花月夜", True) for p in poems)
    assert all(len(p) in (5 * 6, 5 * 8) for p in poems)


def test_beam_search_gives_well_formed_poems():
    for poem in decode(FormConstraint(TOK, "qijue", "春江", True), rows=2, beams=3):
        assert well_formed(poem, "qijue", "春江", True), poem


@pytest.mark.parametrize("first", ["床前明月光", "床前明月光，", "床前明"])
def test_continue_mode_prefix_is_kept_and_completed(first):
    constraint = FormConstraint(TOK, "wujue", "床疑", True, prefix_ids=TOK.encode_text(first))
    for poem in decode(constraint, prefix_body=first, sample=True):
        assert poem.startswith(first) and well_formed(poem, "wujue", "床疑", True), poem
