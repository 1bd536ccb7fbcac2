"""genrt.poems.tokenizer: prompt encoding (mode and form tokens), decoding, ids a decoder must never emit."""
import pytest

from genrt.contract import FORM_TOKENS, SPECIAL_TOKENS
from genrt.poems.tokenizer import CharTokenizer

from .fixtures_poems import TINY_FORM_VOCAB, TINY_VOCAB


@pytest.fixture
def plain():
    return CharTokenizer(TINY_VOCAB)


@pytest.fixture
def with_forms():
    return CharTokenizer(TINY_FORM_VOCAB)


def test_prompt_is_mode_token_then_characters(plain):
    ids = plain.encode_prompt(" 春江 ", "title", 80)
    assert ids == [plain.index["<title>"], plain.index["春"], plain.index["江"]]
    assert plain.encode_prompt("春江", "continue", 80)[0] == plain.index["<first>"]


def test_form_token_follows_the_mode_token_when_the_vocab_has_it(with_forms, plain):
    ids = with_forms.encode_prompt("春江", "title", 80, form="qijue")
    assert ids == [with_forms.index["<title>"], with_forms.index["<qijue>"], with_forms.index["春"],
                   with_forms.index["江"]]
    assert plain.encode_prompt("春江", "title", 80, form="qijue") == plain.encode_prompt("春江", "title", 80)


def test_form_token_counts_against_the_length_limit(with_forms):
    with_forms.encode_prompt("春" * 8, "title", 9)
    with pytest.raises(ValueError, match="at most 7"):
        with_forms.encode_prompt("春" * 8, "title", 9, form="wujue")


def test_decode_skips_every_control_token_and_stops_at_eos(with_forms):
    t = with_forms
    ids = [t.sos_id, t.index["<wulv>"], t.index["春"], t.unk_id, t.index["江"], t.eos_id, t.index["花"]]
    assert t.decode(ids) == "春江"


def test_never_generated_ids_are_the_control_tokens_but_eos(with_forms, plain):
    expected = {with_forms.index[tok] for tok in (*SPECIAL_TOKENS, *FORM_TOKENS.values())} - {with_forms.eos_id}
    assert set(with_forms.never_generated_ids) == expected
    assert set(plain.never_generated_ids) == {plain.index[tok] for tok in SPECIAL_TOKENS} - {plain.eos_id}
    assert set(with_forms.form_ids) == set(FORM_TOKENS) and not plain.form_ids


@pytest.mark.parametrize("text, mode, message", [
    ("", "title", "empty"), ("   ", "title", "empty"), ("春", "poem", "unknown prompt mode"),
    ("ＸＹ", "title", "no character of the prompt is in the model's vocabulary: Ｘ, Ｙ"),
    ("春" * 80, "title", "at most 79"),
])
def test_bad_prompts_name_the_problem(plain, text, mode, message):
    with pytest.raises(ValueError, match=message):
        plain.encode_prompt(text, mode, 80)


def test_char_list_names_each_character_once_in_order():
    from genrt.poems.tokenizer import char_list

    assert char_list("hello") == "h, e, l, o"
    assert char_list(["☃", " ", "☃", "\x00"]) == "☃, ' ', '\\x00'"
