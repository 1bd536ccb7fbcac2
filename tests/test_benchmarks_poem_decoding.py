"""benchmarks.poem_decoding: verse splitting, the poem statistics, the candidates, the validation split and the
report."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.poem_decoding import (
    CANDIDATES, distinct, is_regular, load_split, markdown, mean_nll, poem_stats, verses,
)
from genrt.contract import FORM_TOKENS, PROMPT_FIRST_LINE, PROMPT_TITLE, SPECIAL_TOKENS
from genrt.poems.options import GenerationOptions
from trainers.poems_corpus import pack

JINGYESI = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"


def test_verses_split_on_every_break_and_skip_empty_ones():
    assert verses(JINGYESI) == ["床前明月光", "疑是地上霜", "举头望明月", "低头思故乡"]
    assert verses("，，春风？秋月") == ["春风", "秋月"]
    assert verses("") == []


def test_regular_means_one_of_the_four_forms():
    assert is_regular(JINGYESI) and is_regular(JINGYESI + JINGYESI)
    assert not is_regular("床前明月光，疑是地上霜。") and not is_regular("春风春风，春风春风。")


def test_distinct_counts_unique_ngrams_within_verses():
    assert distinct(["春春春，"], 1) == pytest.approx(1 / 3)
    assert distinct(["春风，风春。"], 2) == 1.0                            # 风风 across the break is no bigram
    assert distinct([], 2) == 0.0


def test_poem_stats():
    poems = [JINGYESI, "春春春风，春春春风。"]
    stats = poem_stats(poems, train_verses={"床前明月光", "秋风"})
    assert stats["poems"] == 2 and stats["regular_form"] == 0.5
    assert stats["repeated_verse_poems"] == 0.5                            # the second repeats its verse
    assert stats["verses_char_3x"] == pytest.approx(2 / 6)                 # 春 three times, in both its verses
    assert stats["copied_verses"] == pytest.approx(1 / 6)
    assert stats["distinct_1"] == pytest.approx(19 / 28)                   # 17 of 20 + 2 of 8 characters


def test_every_candidate_is_a_valid_set_of_options():
    for kwargs in CANDIDATES.values():
        GenerationOptions.from_kwargs(**kwargs)                            # raises naming the problem
    assert CANDIDATES["defaults (no options)"] == {}
    for name, kwargs in CANDIDATES.items():             # a candidate that names no mode would inherit the model's
        assert name.startswith("defaults") or "do_sample" in kwargs, name      # recommended sampling settings


def write_cache(folder, vocab, val_pairs, train_targets):
    """A corpus cache as trainers.poems_corpus writes it: val (source, target) pairs and train targets, as text
    lists of tokens."""
    index = {t: i for i, t in enumerate(vocab)}
    ids = lambda tokens: [index[t] for t in tokens]                       # noqa: E731
    arrays = {}
    for name, seqs in (("val_src", [ids(s) for s, _ in val_pairs]), ("val_tgt", [ids(t) for _, t in val_pairs]),
                       ("train_tgt", [ids(t) for t in train_targets])):
        arrays[name], arrays[f"{name}_offsets"] = pack(seqs)
    folder.mkdir(parents=True)
    np.savez(folder / "corpus.npz", **arrays)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return folder


VOCAB = list(SPECIAL_TOKENS) + list("，。") + list("春江明月花山水床前光疑是地上霜") + [FORM_TOKENS["wujue"]]


def test_load_split_takes_distinct_title_prompts_and_the_training_verses(tmp_path):
    title, first, wujue = PROMPT_TITLE, PROMPT_FIRST_LINE, FORM_TOKENS["wujue"]
    cache = write_cache(tmp_path / "cache", VOCAB, [
        ([title, "春", "江"], list("春江花月。")),
        ([first, "明", "月"], list("明月山水。")),                      # continue mode: not a title
        ([title, "春", "江"], list("江水。")),                           # the same title again: the first is kept
        ([title, wujue, "山"], list("山水。")),                          # a form token in the source: left out
        ([title, "明", "月"], list("明月光。")),
        ([title], list("花。")),                                         # no title characters
    ], [list("床前光，疑是地上霜。"), ["<pad>"], list("山水")])
    titles, real, train_verses = load_split(cache, 10, seed=0)
    assert sorted(zip(titles, real)) == [("明月", "明月光。"), ("春江", "春江花月。")]
    assert train_verses == {"床前光", "疑是地上霜", "山水"}              # control ids split verses too
    one, poem, _ = load_split(cache, 1, seed=0)
    assert len(one) == 1 and one[0] in titles and poem == [dict(zip(titles, real))[one[0]]]


def test_mean_nll_scores_only_texts_the_model_can_read():
    scored = []

    def score(prompts, texts):
        scored.append((prompts, texts))
        return [SimpleNamespace(nll_per_char=float(len(t))) for t in texts]
    generator = SimpleNamespace(tokenizer=SimpleNamespace(unknown_chars=lambda x: [c for c in x if c == "?"]),
                                manifest=SimpleNamespace(max_len=6), score=score)
    got = mean_nll(generator, ["a", "b", "c", "d", "e"], ["春江", " ", "春?", "春江花月夜啊", "春江花"])
    assert scored == [(["a", "e"], ["春江", "春江花"])] and got == 2.5
    assert mean_nll(generator, ["a"], [""]) is None


def test_markdown_has_one_row_and_one_example_line_per_candidate():
    row = {"candidate": "greedy", "regular_form": 0.5, "repeated_verse_poems": 0.25, "verses_char_3x": 0.125,
           "distinct_1": 0.8, "distinct_2": 0.95, "copied_verses": 0.0, "nll_per_char": None,
           "seconds_per_poem": 0.0123, "examples": ["春: 春江花月夜。", "秋: 秋风。", "冬: 冬雪。"]}
    text = markdown({"model": "m", "precision": "int8", "titles": 4, "seed": 0, "rows": [row]})
    assert text.startswith("Model m (int8), 4 validation titles, seed 0.")
    assert "| greedy | 50.0% | 25.0% | 12.5% | 0.80 | 0.95 | 0.0% | – | 12 |" in text
    assert "- greedy: 春: 春江花月夜。 / 秋: 秋风。\n" in text


DOUBLING = {"min_count": 20, "min_at_position": 3, "verse_lengths": [5, 7],
            "chars": {"萧": {"count": 50, "5": [0, 3], "7": [0, 5]}}}


def test_reader_stats_count_what_a_reader_notices():
    from benchmarks.poem_decoding import reader_stats
    from genrt.poems.verse.doubling import DoublingTable
    table = DoublingTable.from_json(DOUBLING)
    titles = ["夜泊", "山居", "秋风"]
    poems = ["夜泊夜泊舟，江月萧萧舟。", "山居亦何好，无人在山中。", "风风吹落叶，风雨萧萧来。"]
    stats = reader_stats(titles, poems, table)
    assert stats["unidiomatic_double_poems"] == pytest.approx(1 / 3)    # 风风
    assert stats["misplaced_double_poems"] == pytest.approx(2 / 3)      # and 萧萧 at start 2 of a 5-verse poem
    assert stats["title_echo_poems"] == pytest.approx(2 / 3)            # 夜泊 twice, 山居 once
    assert stats["title_echo_2x_poems"] == pytest.approx(1 / 3)
    assert stats["opening_3x_poems"] == 0.0
    assert reader_stats(["春"], ["春风，春雨，春山，秋水。"], None) == {
        "unidiomatic_double_poems": None, "misplaced_double_poems": None, "title_echo_poems": 0.0,
        "title_echo_2x_poems": 0.0, "opening_3x_poems": 1.0}


def test_the_doubling_decision_adds_the_processor_before_the_shape(tmp_path):
    from benchmarks.poem_decoding import doubling_generator
    from genrt.contract import PoemsManifest
    from genrt.poems.verse.doubling import DOUBLING_FILE, IdiomaticDoubling
    from genrt.poems.verse.shape import RegularShape
    from genrt.poems.tokenizer import CharTokenizer
    (tmp_path / DOUBLING_FILE).write_text(json.dumps(DOUBLING, ensure_ascii=False), encoding="utf-8")
    manifest = PoemsManifest(vocab=tuple(VOCAB), d_model=8, num_heads=2, num_encoder_layers=1,
                             num_decoder_layers=1, dim_feedforward=8, max_len=16, doubling_file=DOUBLING_FILE)

    class Generator:
        def __init__(self, model):
            self.model, self.manifest, self.tokenizer = model, model.manifest, CharTokenizer(model.manifest.vocab)

        def _processors(self, opts, forced):
            return ["suppress", RegularShape(self.tokenizer)]
    plain = Generator(SimpleNamespace(model_dir=tmp_path, manifest=manifest))
    if "idiomatic_doubling" in GenerationOptions.__dataclass_fields__:     # wired: the option decides
        assert doubling_generator(plain, True) == (plain, {"idiomatic_doubling": True})
        return
    assert doubling_generator(plain, False) == (plain, {})
    wired, extra = doubling_generator(plain, True)
    chain = wired._processors(None, [[]])
    assert extra == {} and chain[0] == "suppress" and isinstance(chain[1], IdiomaticDoubling)
    assert isinstance(chain[2], RegularShape) and plain._processors(None, [[]])[0] == "suppress"
