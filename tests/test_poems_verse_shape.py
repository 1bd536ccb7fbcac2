"""genrt.poems.verse.shape.RegularShape: 5 or 7 characters a verse, '，'/'。' alternating, 4 or 8 verses."""
import numpy as np

from genrt.poems.verse.forms import well_formed
from genrt.poems.verse.shape import RegularShape
from genrt.poems.tokenizer import CharTokenizer
from tests.fixtures_poems import TINY_VOCAB

TOK = CharTokenizer(TINY_VOCAB)


def decode_with(processor, pick, steps=80) -> str:
    """Greedy-like loop over a pick(logits row) rule, through the processor, from <sos>."""
    tokens = [TOK.sos_id]
    for _ in range(steps):
        logits = np.zeros((1, len(TOK)), np.float32)
        logits[0, TOK.never_generated_ids] = -np.inf
        logits = processor(np.array([tokens]), pick(tokens, logits))
        nxt = int(logits[0].argmax())
        if nxt == TOK.eos_id:
            break
        tokens.append(nxt)
    return TOK.decode(tokens[1:])


def prefer(chars: str):
    """Bias toward the given tokens in turn (punctuation and <eos> everywhere), as a stubborn model would."""
    ids = TOK.encode_text(chars)
    def pick(tokens, logits):
        logits[0, ids[len(tokens) % len(ids)]] += 5.0
        logits[0, [TOK.index["，"], TOK.index["。"], TOK.index["！"], TOK.eos_id]] += 3.0   # wants to stop early
        return logits
    return pick


def test_a_model_that_wants_to_stop_early_still_writes_a_regular_poem():
    text = decode_with(RegularShape(TOK), prefer("春江花月夜山水"))
    assert any(well_formed(text, f) for f in ("五言绝句", "七言绝句", "五言律诗", "七言律诗")), text
    assert "！" not in text


def test_a_model_that_never_stops_ends_after_eight_verses():
    def never_stop(tokens, logits):
        logits[0, TOK.eos_id] = -10.0
        logits[0, TOK.encode_text("明")[0]] += 2.0 if len(tokens) % 7 else -5
        return logits
    text = decode_with(RegularShape(TOK), never_stop, steps=200)
    assert any(well_formed(text, f) for f in ("五言律诗", "七言律诗")), text


def test_first_verse_may_take_seven_characters_and_the_rest_follow():
    state = RegularShape(TOK)
    body = TOK.encode_text("春江花月夜山水，")
    assert state._allowed(body[:5]) == "han_or_comma"
    assert state._allowed(body[:6]) == "han"
    assert state._allowed(body[:7]) == TOK.index["，"]
    assert state._allowed(body + TOK.encode_text("明月光")) == "han"
    assert state._allowed(body + TOK.encode_text("明月光清风白云")) == TOK.index["。"]


def test_forced_text_off_the_shape_is_left_free():
    state = RegularShape(TOK)
    assert state._allowed(TOK.encode_text("春江花，")) is None
    logits = np.zeros((1, len(TOK)), np.float32)
    out = state(np.array([[TOK.sos_id] + TOK.encode_text("春江花，")]), logits.copy())
    assert np.array_equal(out, logits)
