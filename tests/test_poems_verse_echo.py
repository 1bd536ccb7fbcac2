"""genrt.poems.verse.echo: a character opens at most N verses; a title bigram recurs at most N times."""
import numpy as np

from genrt.decoding.processors import NEG
from genrt.poems.verse.echo import TitleEcho, VerseOpenings

COMMA, PERIOD, EOS, V = 6, 7, 2, 20


def banned(processor, row):
    logits = processor(np.array([[1] + row]), np.zeros((1, V), np.float32))
    return sorted(np.flatnonzero(logits[0] == NEG).tolist())


def test_a_character_opens_at_most_max_openings_verses():
    rule = VerseOpenings([COMMA, PERIOD], max_openings=2)
    assert banned(rule, []) == []
    assert banned(rule, [10, 11, COMMA, 10, 12, PERIOD]) == [10]          # 10 opened two verses: not a third
    assert banned(rule, [10, 11, COMMA, 10, 12, PERIOD, 13]) == []        # inside a verse: nothing banned
    assert banned(rule, [10, 11, COMMA, 12, 13, PERIOD]) == []
    assert banned(VerseOpenings([COMMA, PERIOD], 1), [10, 11, COMMA]) == [10]


def test_rows_are_judged_each_on_its_own():
    rule = VerseOpenings([COMMA], max_openings=2)
    logits = rule(np.array([[1, 10, COMMA, 10, COMMA], [1, 10, COMMA, 11, 12]]), np.zeros((2, V), np.float32))
    assert np.isneginf(logits[0, 10]) and np.isfinite(logits[1]).all()


def test_a_title_bigram_recurs_at_most_max_echoes_times():
    echo = TitleEcho([14, 15, 16], max_echoes=1)                          # title bigrams (14, 15) and (15, 16)
    assert echo.max_banned_ids == 1
    assert banned(echo, [14]) == []                                       # the first echo is allowed
    assert banned(echo, [14, 15, COMMA, 14]) == [15]                      # not a second
    assert banned(echo, [14, 15, 16, COMMA, 15]) == [16]
    assert banned(echo, [11, 12]) == []
    assert banned(TitleEcho([14], 1), [14]) == []                         # a one-character title has no bigram


def test_generator_applies_them_by_request(tiny_poems_dir):
    from genrt.poems.generator import PoemGenerator
    gen = PoemGenerator.load(tiny_poems_dir, provider="cpu", threads=1)
    opts = gen.options(max_verse_openings=2, max_title_echoes=1)
    kinds = [type(p).__name__ for p in gen._processors(opts, [[]], "春江")]
    assert "VerseOpenings" in kinds and "TitleEcho" in kinds
    off = gen.options(max_verse_openings=0, max_title_echoes=0)
    assert not {"VerseOpenings", "TitleEcho"} & {type(p).__name__ for p in gen._processors(off, [[]], "春江")}
    for poem in gen.generate(["春江", "明月"], max_new_tokens=40, max_verse_openings=1, max_title_echoes=1,
                             regular_shape=False):
        verses = [v for v in poem[0].text.replace("。", "，").split("，") if v]
        firsts = [v[0] for v in verses]
        assert len(firsts) == len(set(firsts)) and poem[0].text.count("春江") <= 1
