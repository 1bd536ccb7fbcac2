"""PoemGenerator API on a tiny exported model: modes, batching, sampling, streaming, bad input."""
import re
from pathlib import Path

import numpy as np
import pytest

from genrt import GenerationOptions, PoemGenerator
from genrt.contract import ManifestError


@pytest.fixture(scope="module")
def gen(tiny_poems_dir):
    return PoemGenerator.load(tiny_poems_dir, provider="cpu", threads=1)


def test_generate_one_prompt(gen):
    poems = gen.generate("春江花月夜", max_new_tokens=12)
    assert len(poems) == 1
    p = poems[0]
    assert p.prompt == "春江花月夜" and isinstance(p.text, str) and len(p.text) <= 12
    assert not set(p.text) & {"<", ">"}


def test_batch_of_prompts_equals_one_by_one(gen):
    prompts = ["春江", "明月光", "山水清风"]
    batch = gen.generate(prompts, max_new_tokens=10)
    for prompt, got in zip(prompts, batch):
        assert got[0].text == gen.generate(prompt, max_new_tokens=10)[0].text
    beams = gen.generate(prompts, num_beams=3, max_new_tokens=10)
    for prompt, got in zip(prompts, beams):
        assert got[0].text == gen.generate(prompt, num_beams=3, max_new_tokens=10)[0].text


def test_beam_returns_several_sequences(gen):
    poems = gen.generate("春江", num_beams=4, num_return_sequences=3, max_new_tokens=10)
    assert len(poems) == 3
    assert len({p.text for p in poems}) == 3


def test_sampling_is_reproducible_with_a_seed(gen):
    kw = dict(do_sample=True, temperature=1.2, top_k=30, top_p=0.95, max_new_tokens=16)
    a = gen.generate("春江", seed=11, num_return_sequences=3, **kw)
    b = gen.generate("春江", seed=11, num_return_sequences=3, **kw)
    c = gen.generate("春江", seed=12, num_return_sequences=3, **kw)
    assert [p.text for p in a] == [p.text for p in b]
    assert [p.text for p in a] != [p.text for p in c]


@pytest.mark.parametrize("kw", [{}, {"do_sample": True, "seed": 3}, {"mode": "continue"}, {"num_beams": 3},
                                {"num_beams": 3, "do_sample": True, "seed": 1},
                                {"do_sample": True, "best_of": 3, "seed": 2}])
def test_stream_yields_what_generate_returns_in_every_mode(gen, kw):
    pieces = list(gen.stream("明月光", max_new_tokens=12, **kw))
    assert "".join(pieces) == gen.generate("明月光", max_new_tokens=12, **kw)[0].text
    assert pieces and all(pieces)


def test_continue_mode_starts_with_the_line(gen):
    p = gen.generate("床前明月光", mode="continue", max_new_tokens=8)[0] if all(
        c in gen.tokenizer.index for c in "床前明月光") else gen.generate("春江花月夜", mode="continue",
                                                                       max_new_tokens=8)[0]
    assert p.text.startswith(p.prompt)
    assert len(p.text) <= len(p.prompt) + 8


def test_a_continued_line_of_marks_only_is_refused(gen):
    for line in ("，。", "。"):
        with pytest.raises(ValueError, match="a line of characters to go on from"):
            gen.generate(line, mode="continue")


def test_options_object_and_kwargs_agree(gen):
    opts = gen.options(num_beams=2, max_new_tokens=6)        # kwargs = the model's recommendations under them
    assert gen.generate("春江", opts)[0].text == gen.generate("春江", num_beams=2, max_new_tokens=6)[0].text


@pytest.fixture
def gen_with_defaults(tiny_poems_dir, tmp_path):
    import json
    import shutil
    model = Path(shutil.copytree(tiny_poems_dir, tmp_path / "model"))
    manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    manifest["generation"] = {"default": {"max_new_tokens": 5, "repetition_penalty": 1.3},
                              "beam": {"length_penalty": 0.8}, "sample": {"temperature": 0.5, "top_k": 7},
                              "no_options": {"do_sample": True, "best_of": 3, "temperature": 0.9, "seed": 2}}
    (model / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    return PoemGenerator.load(model, provider="cpu", threads=1)


@pytest.mark.parametrize("generation, mode", [({"default": {"length_penalty": 0.5}}, "no options"),
                                              ({"sample": {"length_penalty": 0.5}}, "sampling")])
def test_recommended_settings_that_do_not_go_together_are_named_at_load(tiny_poems_dir, tmp_path, generation,
                                                                        mode):
    import json
    import shutil
    from genrt.contract import ManifestError
    model = Path(shutil.copytree(tiny_poems_dir, tmp_path / "model"))
    manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    manifest["generation"] = generation
    (model / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ManifestError, match=f"recommended settings for {mode} do not go together"):
        PoemGenerator.load(model, provider="cpu", threads=1)


def test_numpy_scalars_mean_what_python_values_mean(gen_with_defaults):
    import numpy as np
    g = gen_with_defaults
    for kwargs in ({"num_return_sequences": 5}, {"do_sample": True}, {"num_beams": 3}, {"do_sample": False},
                   {"seed": 9, "top_k": 4}):
        as_numpy = {k: np.bool_(v) if isinstance(v, bool) else np.int64(v) for k, v in kwargs.items()}
        assert g.options(**as_numpy) == g.options(**kwargs), kwargs


def test_manifest_defaults_apply_and_explicit_options_win(gen_with_defaults):
    g = gen_with_defaults
    plain = g.options()
    assert (plain.max_new_tokens, plain.repetition_penalty, plain.do_sample, plain.best_of) == (5, 1.3, True, 3)
    assert plain.seed == 2 and g.options(do_sample=True).seed is None     # asking to sample: a fresh seed
    assert g.options(num_return_sequences=5).best_of == 5                 # more poems than the recommended 3
    greedy = g.options(do_sample=False)
    assert (greedy.do_sample, greedy.best_of, greedy.max_new_tokens) == (False, 1, 5)
    assert g.options(max_new_tokens=7, repetition_penalty=1.0).max_new_tokens == 7
    assert g.options(num_beams=3).length_penalty == 0.8 and g.options().length_penalty == 1.0
    sampled = g.options(do_sample=True)
    assert (sampled.temperature, sampled.top_k) == (0.5, 7)
    assert g.options(do_sample=True, temperature=1.5).temperature == 1.5
    assert g.options(GenerationOptions()).max_new_tokens == GenerationOptions().max_new_tokens  # object: as given
    assert len(g.generate("春江")[0].text) <= 5
    assert g.generate("春江") == g.generate("春江")                      # the no-options mode is reproducible
    assert "".join(g.stream("春江")) == g.generate("春江")[0].text         # stream: the same poem


def test_recommended_beam_sampling_and_greedy_beams(gen_with_defaults, tiny_poems_dir, tmp_path):
    import json
    import shutil
    model = Path(shutil.copytree(tiny_poems_dir, tmp_path / "beam_model"))
    manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    manifest["generation"] = {"default": {"repetition_penalty": 1.2},
                              "beam": {"do_sample": True, "temperature": 1.0, "top_k": 40, "seed": 0}}
    (model / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    g = PoemGenerator.load(model, provider="cpu", threads=1)
    beam = g.options(num_beams=4)
    assert (beam.do_sample, beam.top_k, beam.seed, beam.repetition_penalty) == (True, 40, 0, 1.2)
    best_first = g.options(num_beams=4, do_sample=False)     # no recommended sampling setting survives
    assert (best_first.do_sample, best_first.top_k, best_first.seed, best_first.temperature) == (False, 0, None, 1.0)
    assert best_first.repetition_penalty == 1.2
    assert g.options(num_beams=4, do_sample=True).seed is None          # asking to sample: a fresh seed
    assert g.options(num_beams=4, seed=7).seed == 7
    poems = {g.generate("春江", num_beams=4, seed=s, max_new_tokens=12)[0].text for s in range(6)}
    assert len(poems) > 1                                     # the seed matters
    assert g.generate("春江", num_beams=4, max_new_tokens=12) == g.generate("春江", num_beams=4, max_new_tokens=12)
    explicit = GenerationOptions(num_beams=4, repetition_penalty=1.2, max_new_tokens=12).validate()
    assert g.generate("春江", num_beams=4, do_sample=False, max_new_tokens=12) == g.generate("春江", explicit)


def test_a_bad_generation_section_is_named_at_load(tiny_poems_dir, tmp_path):
    import json
    import shutil
    model = Path(shutil.copytree(tiny_poems_dir, tmp_path / "model"))
    manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
    manifest["generation"] = {"default": {"temprature": 0.5}, "greedy": {}}
    (model / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ManifestError, match="temprature") as info:
        PoemGenerator.load(model, provider="cpu")
    assert "greedy" in str(info.value)


def test_options_must_be_an_options_object(gen):
    with pytest.raises(ValueError, match="options must be a GenerationOptions"):
        gen.generate("春江", {"num_beams": 2})
    with pytest.raises(ValueError, match="prompt must be a string"):
        gen.generate(None)


@pytest.mark.parametrize("kwargs", [dict(), dict(num_beams=3), dict(do_sample=True, seed=4, num_return_sequences=2),
                                    dict(num_beams=3, do_sample=True, seed=5, top_k=20, num_return_sequences=2)])
def test_a_prompt_decodes_the_same_alone_or_in_a_batch(gen, kwargs):
    alone = [p.text for p in gen.generate("明月光", max_new_tokens=12, **kwargs)]
    for batch in (["春江", "明月光"], ["明月光", "明月光", "山水清风"]):
        together = gen.generate(batch, max_new_tokens=12, **kwargs)
        assert [p.text for p in together[batch.index("明月光")]] == alone


def test_score_is_batch_independent_and_matches_greedy_scores(gen):
    poems = [p[0] for p in gen.generate(["春江", "明月", "山水清风"], max_new_tokens=10, repetition_penalty=1.0,
                                          max_char_repeats=0, no_repeat_verse=False)]
    one_by_one = [gen.score(p.prompt, p.text)[0] for p in poems]
    batched = gen.score([p.prompt for p in poems], [p.text for p in poems], batch_size=3)
    for a, b, p in zip(one_by_one, batched, poems):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.tokens == len(p.text) + 1 and a.nll_per_char == pytest.approx(-a.logprob / a.tokens)
        eos = gen.score(p.prompt, p.text)[0].logprob - p.score   # score() adds <eos>; generation stopped before
        assert eos < 0 if not p.finished else eos == pytest.approx(0, abs=1e-4)


def test_score_rejects_what_it_cannot_score(gen):
    with pytest.raises(ValueError, match="as many prompts as poems"):
        gen.score(["春江", "明月"], ["春江水"])
    for prompts, poems, match in (("春江", None, "poems must be a string or a list of strings, got NoneType"),
                                  ({"春江": 1}, {"春江水": 1}, "prompts must be a string or a list of strings, got dict"),
                                  (["春江"], [3], "a poem must be a string, got int")):
        with pytest.raises(ValueError, match=match):
            gen.score(prompts, poems)
    assert gen.score((p for p in ["春江"]), ["春江水"]) == gen.score("春江", "春江水")
    with pytest.raises(ValueError, match="outside the model's vocabulary: ☃"):
        gen.score("春江", "春江☃")
    with pytest.raises(ValueError, match="must start with its prompt line"):
        gen.score("春江", "明月", mode="continue")


def test_traditional_characters_map_to_the_vocabulary(gen):
    assert gen.dropped_chars("東風☃") == "☃"
    assert gen.generate("東風", max_new_tokens=8)[0].text == gen.generate("东风", max_new_tokens=8)[0].text


def test_repetition_controls_reduce_repeats(gen):
    plain = gen.generate("春江", max_new_tokens=30)[0].text
    controlled = gen.generate("春江", max_new_tokens=30, no_repeat_ngram_size=1)[0].text
    han = [c for c in controlled if c not in "，。？！"]
    assert len(han) == len(set(han))
    assert isinstance(plain, str)


def test_max_length_is_capped_by_the_model(gen):
    p = gen.generate("春江", max_new_tokens=4096)[0]       # the options' own cap; the model allows far fewer
    assert len(p.text) <= gen.manifest.max_len


@pytest.mark.parametrize("prompt, kwargs, message", [
    ("", {}, "the prompt is empty"),
    ("   ", {}, "the prompt is empty"),
    ("xyz☃", {}, "no character of the prompt is in the model's vocabulary: x, y, z, ☃"),
    ("春" * 200, {}, "accepts at most"),
    ("春江", {"num_beams": 0}, "num_beams must be >= 1"),
    ("春江", {"do_sample": True, "top_p": 1.5}, "top_p"),
    ("春江", {"do_sample": True, "temperature": 0}, "temperature must be > 0"),
    ("春江", {"do_sample": True, "num_beams": 2, "best_of": 3}, "use one or the other"),
    ("春江x", {"mode": "continue"}, "unknown: x"),
    ("春 江", {"mode": "continue"}, "unknown: ' '$"),                      # a space is named, not blank
    ("春江", {"beams": 2}, "unknown generation option"),
])
def test_bad_input_raises_value_error(gen, prompt, kwargs, message):
    with pytest.raises(ValueError, match=message):
        gen.generate(prompt, **kwargs)


def test_stream_checks_its_input_before_iterating(gen):
    with pytest.raises(ValueError, match="stream shows one poem"):
        gen.stream("春江", num_beams=2, num_return_sequences=2)
    with pytest.raises(ValueError, match="the prompt is empty"):
        gen.stream("")


def test_missing_model_dir_is_a_manifest_error(tmp_path):
    with pytest.raises(ManifestError, match="missing manifest.json"):
        PoemGenerator.load(tmp_path, provider="cpu")


def test_partly_unknown_prompt_is_accepted(gen):
    assert gen.generate("春江☃", max_new_tokens=4)[0].prompt == "春江☃"
    assert np.isfinite(gen.generate("春江", num_beams=2, max_new_tokens=4)[0].score)


@pytest.mark.parametrize("form, lines, chars", [("wujue", 4, 5), ("七言绝句", 4, 7), ("wulv", 8, 5), ("qilv", 8, 7)])
@pytest.mark.parametrize("kw", [{}, {"num_beams": 3}, {"do_sample": True, "seed": 1}])
def test_forms_yield_the_shape_with_every_search(gen, form, lines, chars, kw):
    from genrt.poems.verse.forms import well_formed
    p = gen.generate("春江", form=form, **kw)[0]
    assert p.finished and well_formed(p.text, form=form), p.text
    assert p.text.count("，") + p.text.count("。") == lines
    assert len(p.text) == lines * (chars + 1)


@pytest.mark.parametrize("form", ["wujue", "qijue", "wulv", "qilv"])
@pytest.mark.parametrize("kw", [{}, {"num_beams": 3}, {"do_sample": True, "seed": 1, "num_return_sequences": 2}])
def test_tonal_poems_follow_a_pattern_with_every_search(gen, form, kw):
    from genrt.poems.verse.tonal import tonal_problem
    for p in gen.generate("春江", form=form, tonal=True, **kw):
        assert p.finished and tonal_problem(p.text, form) is None, p.text


def test_pingshui_rhyme_and_a_continued_line_under_tones(gen):
    from genrt.poems.verse.tonal import pingshui_rhyme_problem, tonal_problem
    p = gen.generate("春江", form="wulv", rhyme="pingshui")[0]
    assert pingshui_rhyme_problem(p.text, "wulv") is None, p.text
    q = gen.generate("春风花草香", mode="continue", form="wujue", tonal=True)[0]   # 平平平仄平: a B variant
    assert q.text.startswith("春风花草香，") and tonal_problem(q.text, "wujue") is None, q.text
    with pytest.raises(ValueError, match="does not fit the tonal pattern"):
        gen.generate("春风花香光", mode="continue", form="wujue", tonal=True)     # 2nd and 4th both 平


@pytest.mark.parametrize("kw", [{}, {"num_beams": 2}, {"do_sample": True, "seed": 0}])
def test_min_new_tokens_gives_at_least_that_many_characters(gen, kw):
    from genrt.poems.tokenizer import CharTokenizer
    for p in gen.generate(["春江", "明月"], min_new_tokens=30, max_new_tokens=30, regular_shape=False, **kw):
        assert len(CharTokenizer(gen.tokenizer.vocab).encode_text(p[0].text)) == 30 and not p[0].finished
    with pytest.raises(ValueError, match="does not fit"):
        gen.generate("春江", min_new_tokens=4000, max_new_tokens=4000, regular_shape=False)


def test_acrostic_and_continue_mode(gen):
    from genrt.poems.verse.forms import well_formed
    p = gen.generate("春夏秋冬", acrostic="春夏秋冬")[0]
    assert [line[0] for line in p.text.replace("，", "。").split("。") if line] == list("春夏秋冬")
    q = gen.generate("春江花月夜", mode="continue", form="wujue")[0]
    assert q.text.startswith("春江花月夜，") and well_formed(q.text, form="wujue")


@pytest.mark.parametrize("kwargs, message", [
    ({"form": "sonnet"}, "form"),
    ({"form": "wujue", "acrostic": "春夏秋冬山"}, "acrostic"),
    ({"form": "qilv", "max_new_tokens": 20}, "needs"),
    ({"form": "wujue", "mode": "continue"}, "longer than 5"),
])
def test_impossible_form_requests(gen, kwargs, message):
    with pytest.raises(ValueError, match=message):
        gen.generate("春江花月夜山", **kwargs)


# ---------------------------------------------------------------- a model trained with form tokens

@pytest.fixture(scope="module")
def form_gen(tiny_form_poems_dir):
    return PoemGenerator.load(tiny_form_poems_dir, provider="cpu", threads=1)


def test_a_form_request_puts_the_form_token_in_the_source(form_gen, gen):
    tok = form_gen.tokenizer
    sources, _ = form_gen._encode_prompts(["春江"], GenerationOptions(form="七言绝句"))
    assert sources[0][:2] == [tok.index["<title>"], tok.index["<qijue>"]]
    untagged, _ = form_gen._encode_prompts(["春江"], GenerationOptions(form="七言绝句", form_token=False))
    assert tok.index["<qijue>"] not in untagged[0]
    plain, _ = gen._encode_prompts(["春江"], GenerationOptions(form="七言绝句"))  # model without form tokens
    assert len(plain[0]) == 3


def test_the_form_token_changes_what_the_model_sees(form_gen):
    tagged = form_gen.generate("春江", form="wulv", num_beams=2)[0]
    untagged = form_gen.generate("春江", form="wulv", num_beams=2, form_token=False)[0]
    assert tagged.score != untagged.score


@pytest.mark.parametrize("kw", [{}, {"num_beams": 3}, {"do_sample": True, "seed": 2}])
def test_form_token_model_yields_the_shape_and_never_emits_control_tokens(form_gen, kw):
    from genrt.poems.verse.forms import well_formed
    p = form_gen.generate("春江", form="qijue", **kw)[0]
    assert well_formed(p.text, form="qijue") and "<" not in p.text
    free = form_gen.generate("春江", max_new_tokens=30, **kw)[0]
    assert "<" not in free.text


def test_form_token_option_must_be_a_bool(form_gen):
    with pytest.raises(ValueError, match="form_token must be True or False"):
        form_gen.generate("春江", form="qijue", form_token="no")


def test_many_prompts_run_in_bounded_rows(gen, monkeypatch):
    """prompts x beams no longer sizes memory: the scheduler keeps at most BATCH_ROWS rows (or one request's) in
    the decoder, and the rest wait for room."""
    import genrt.poems.generator as generator
    monkeypatch.setattr(generator, "BATCH_ROWS", 6)
    rows, step = [], gen.model.step

    def counting(tokens, cache):
        rows.append(len(tokens))
        return step(tokens, cache)
    monkeypatch.setattr(gen.model, "step", counting)
    poems = gen.generate(["春江", "明月", "秋", "花"], num_beams=3, max_new_tokens=6)
    assert len(poems) == 4 and max(rows) == 6


def test_revise_keeps_every_other_verse_and_ranks_by_the_whole_poem(gen):
    from genrt.poems.revise import split_verses
    poem = gen.generate("春江", max_new_tokens=60)[0].text
    verses = split_verses(poem)
    assert len(verses) >= 2
    for kw in ({}, {"num_beams": 3}, {"do_sample": True, "seed": 2}):
        versions = gen.revise("春江", poem, 2, num_alternatives=3, **kw)
        assert 1 <= len(versions) <= 3
        for v in versions:
            new = split_verses(v.text)
            assert new[0] == verses[0] and new[2:] == verses[2:] and new[1] != verses[1]
            assert len(new[1]) == len(verses[1]) and new[1][-1] == verses[1][-1]
        want = gen.score(["春江"] * len(versions), [v.text for v in versions])
        assert [v.score for v in versions] == [w.logprob for w in want] == sorted(v.score for v in versions)[::-1]
    assert gen.revise("春江", poem, 2, 2, do_sample=True, seed=5) == gen.revise("春江", poem, 2, 2, do_sample=True,
                                                                                  seed=5)


def test_revise_keeps_the_form_and_refuses_bad_input(gen):
    from genrt.poems.verse.forms import well_formed
    poem = gen.generate("春江", form="wujue")[0].text
    for v in gen.revise("春江", poem, 3, 2, form="wujue"):
        assert well_formed(v.text, form="wujue")
    for bad, message in (({"line": 0}, "verse number from 1 to"), ({"line": 9}, "verse number"),
                         ({"num_alternatives": 0}, "num_alternatives"), ({"poem": ""}, "non-empty")):
        args = {"prompt": "春江", "poem": poem, "line": 1, "num_alternatives": 2, **bad}
        with pytest.raises(ValueError, match=message):
            gen.revise(**args)
    with pytest.raises(ValueError, match="prompt line is given: revise a verse after it"):
        gen.revise(poem.split("，")[0], poem, 1, mode="continue")


def test_revise_keeps_the_old_verse_s_length_whatever_shape_the_others_suggest(gen):
    """A poem of uneven verses with the regular-shape rule on (the bundled default): the new verse still has the
    old one's length and mark (the shape rule would have ended it at the first verse's length)."""
    from genrt.poems.revise import split_verses
    poem = "春江花月夜，山水风云日星辰。天地人家国，秋冬夏雨雪。"
    for kw in ({"regular_shape": True}, {"regular_shape": True, "num_beams": 2},
               {"regular_shape": True, "do_sample": True, "seed": 3}):
        versions = gen.revise("春江", poem, 2, 3, **kw)
        assert versions, kw
        for v in versions:
            new = split_verses(v.text)
            assert len(new[1]) == 8 and new[1][-1] == "。" and new[0] + "".join(new[2:]) == "春江花月夜，天地人家国，秋冬夏雨雪。"


def test_revise_refuses_before_decoding_what_scoring_would_refuse(gen, monkeypatch):
    calls = []
    monkeypatch.setattr(gen.model, "step", lambda *a: calls.append(1))
    with pytest.raises(ValueError, match="the model scores at most"):
        gen.revise("春江", "春江花月夜，" * 60, 3)
    with pytest.raises(ValueError, match="must start with its prompt line"):
        gen.revise("明月", "春江花月夜，山水风云日。天地人家国，秋冬夏雨雪。", 3, mode="continue")
    for options in ({"num_return_sequences": 5}, {"max_new_tokens": 3, "best_of": 2}):
        with pytest.raises(ValueError, match="(does|do) not apply"):
            gen.revise("春江", "春江花月夜，山水风云日。", 1, **options)
    for poem in ("春江花月夜，，山水风云日。", "，。，。"):
        with pytest.raises(ValueError, match=r"verse \d of the poem is empty"):
            gen.revise("春江", poem, 1)
    with pytest.raises(ValueError, match=re.escape("vocabulary: '\\n'")):
        gen.revise("春江", "春江花月夜，山水\n风云日。", 1)
    assert not calls


def test_revise_names_the_rule_no_version_can_keep(form_gen):
    """A 五绝 poem revised as a 七绝: every version breaks the form, whichever verse is revised."""
    poem = "春江花月夜，山水风云日。天地人家国，秋冬夏雨雪。"
    for line in (1, 4):
        with pytest.raises(ValueError, match="no version of verse|has 5 characters"):
            form_gen.revise("春江", poem, line, 2, form="qijue")


def test_revise_returns_the_kept_verses_as_given(gen, monkeypatch):
    """Traditional characters in the verses kept stay as the caller wrote them (the model reads them simplified)."""
    from genrt.poems.revise import split_verses
    monkeypatch.setattr(gen.tokenizer, "t2s", {"東": "东", "風": "风", "雲": "云"})
    poem = "東風花月夜，山水風雲日。天地人家国，秋冬夏雨雪。"
    versions = gen.revise("春江", poem, 3, 2)
    assert versions
    for v in versions:
        new, old = split_verses(v.text), split_verses(poem)
        assert new[:2] == old[:2] and new[3] == old[3] and new[2] != old[2]
