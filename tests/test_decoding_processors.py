"""Pure numpy logit processors and pickers."""
import numpy as np
import pytest

from genrt.decoding.processors import (
    MinNewTokens,
    NoRepeatNGram, RepetitionPenalty, SuppressTokens, apply_top_k, apply_top_p, log_softmax, logsumexp, make_sampler,
    pick_greedy, softmax, top_ids,
)


def test_suppress_tokens():
    logits = np.zeros((2, 5), np.float32)
    out = SuppressTokens([0, 3])(np.zeros((2, 1), np.int64), logits)
    assert np.isneginf(out[:, [0, 3]]).all() and np.isfinite(out[:, [1, 2, 4]]).all()


def test_repetition_penalty_divides_positive_and_multiplies_negative():
    logits = np.array([[2.0, -2.0, 2.0, 1.0]], np.float32)
    out = RepetitionPenalty(2.0, ignore_ids=[3])(np.array([[0, 1, 3]]), logits.copy())
    np.testing.assert_allclose(out, [[1.0, -4.0, 2.0, 1.0]])


def test_no_repeat_ngram_bans_completing_a_seen_bigram():
    tokens = np.array([[1, 4, 5, 7, 4]])          # bigram (4, 5) seen; last token 4 -> 5 banned
    out = NoRepeatNGram(2)(tokens, np.zeros((1, 8), np.float32))
    assert np.isneginf(out[0, 5]) and np.isfinite(np.delete(out[0], 5)).all()


def test_top_k_keeps_k_best():
    logits = np.array([[1.0, 5.0, 3.0, 4.0]], np.float32)
    out = apply_top_k(logits, 2)
    assert np.isfinite(out[0, [1, 3]]).all() and np.isneginf(out[0, [0, 2]]).all()


def test_top_p_keeps_smallest_set_reaching_p():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], np.float32))
    kept = np.isfinite(apply_top_p(logits, 0.8))[0]
    assert kept.tolist() == [True, True, False, False]
    assert np.isfinite(apply_top_p(logits, 0.1))[0].tolist() == [True, False, False, False]


def test_sampler_is_reproducible_and_respects_bans():
    logits = np.zeros((64, 10), np.float32)
    logits[:, 3] = -np.inf
    a = make_sampler(np.random.default_rng(5), 1.0, 0, 1.0)(logits)
    b = make_sampler(np.random.default_rng(5), 1.0, 0, 1.0)(logits)
    assert (a == b).all() and (a != 3).all() and len(set(a.tolist())) > 3


def test_sampler_follows_distribution():
    probs = np.array([0.7, 0.2, 0.1])
    logits = np.log(np.tile(probs, (20000, 1))).astype(np.float32)
    picks = make_sampler(np.random.default_rng(0), 1.0, 0, 1.0)(logits)
    np.testing.assert_allclose(np.bincount(picks, minlength=3) / len(picks), probs, atol=0.02)


def test_greedy_and_softmax():
    logits = np.array([[0.0, 2.0, 1.0]], np.float32)
    assert pick_greedy(logits).tolist() == [1]
    np.testing.assert_allclose(softmax(logits).sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 0, 1.0), (0.7, 40, 1.0), (1.3, 0, 0.9),
                                                       (0.8, 40, 0.95), (1.0, 0, 0.3), (2.0, 5, 0.5)])
def test_fast_candidates_keep_exactly_the_warped_set(temperature, top_k, top_p):
    from genrt.decoding.processors import apply_temperature, top_candidates
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((6, 3000)) * 3).astype(np.float32)
    logits[:, :5] = -np.inf                                         # banned tokens stay banned
    ids, probs = top_candidates(logits, temperature, top_k, top_p)
    want = softmax(apply_top_p(apply_top_k(apply_temperature(logits, temperature), top_k), top_p)
                   .astype(np.float64))
    for row in range(6):
        kept = ids[row][probs[row] > 0]
        assert set(kept.tolist()) == set(np.flatnonzero(want[row] > 0).tolist())
        np.testing.assert_allclose(probs[row][probs[row] > 0], want[row][kept], rtol=1e-5)


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 0, 1.0), (0.9, 100, 0.95), (1.0, 0, 0.9)])
def test_candidates_and_draws_of_a_row_do_not_depend_on_the_other_rows(temperature, top_k, top_p):
    """Peaked rows (their top 512 hold p of the mass) next to flat ones (they need the whole vocab): each row
    gets what it gets alone, so sampled requests can share one sample_rows call."""
    from genrt.decoding.processors import sample_rows, top_candidates
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((6, 3000)) * np.array([[8.0], [0.1], [8.0], [0.1], [3.0], [8.0]])
              ).astype(np.float32)
    ids, probs = top_candidates(logits, temperature, top_k, top_p)
    for row in range(6):
        ids1, probs1 = top_candidates(logits[row:row + 1], temperature, top_k, top_p)
        width = ids1.shape[1]
        assert np.array_equal(ids[row, :width], ids1[0]) and np.array_equal(probs[row, :width], probs1[0])
        assert not probs[row, width:].any()                          # padding of a shorter row: never drawn
    samplers = [make_sampler([np.random.default_rng([k, j]) for j in range(n)], temperature, top_k, top_p)
                for k, n in enumerate((2, 1, 3))]
    together = sample_rows(samplers, logits)
    fresh = [make_sampler([np.random.default_rng([k, j]) for j in range(n)], temperature, top_k, top_p)
             for k, n in enumerate((2, 1, 3))]
    alone = np.concatenate([fresh[0](logits[:2]), fresh[1](logits[2:3]), fresh[2](logits[3:])])
    assert together.tolist() == alone.tolist()


def test_logsumexp_and_log_softmax_handle_banned_tokens():
    logits = np.array([[1.0, 2.0, -np.inf, 0.5], [-np.inf, 3.0, -np.inf, -np.inf]], np.float32)
    with np.errstate(divide="ignore"):
        want = np.log(np.exp(logits.astype(np.float64)).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(logsumexp(logits), want, rtol=1e-6)
    lp = log_softmax(logits)
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-6)
    assert lp[1, 1] == 0.0 and np.isneginf(lp[0, 2])


@pytest.mark.parametrize("m", [1, 8, 17, 40, 512, 5000])
def test_top_ids_are_the_m_largest(m):
    rng = np.random.default_rng(m)
    x = (rng.standard_normal((3, 8763)) * 3).astype(np.float32)
    x[:, :100] = -np.inf                       # banned tokens
    x[2] = -np.inf
    x[2, [7, 70, 700]] = [1.0, 2.0, 3.0]       # a row with fewer finite values than most m
    got = top_ids(x, m)
    assert got.shape == (3, m)
    for row in range(3):
        assert len(set(got[row].tolist())) == m
        kth = np.sort(x[row])[-m]
        assert (x[row, got[row]] >= kth).all()  # nothing smaller than the m-th largest was picked


@pytest.mark.parametrize("m", [17, 40, 100])
def test_top_ids_of_rows_narrowed_by_a_processor(m):
    """Rows with few finite values, fewer or more than m, all off the strided sample: the finite ids first."""
    x = np.full((2, 8763), -np.inf, np.float32)
    few, many = np.arange(1, 9) * 997 + 1, np.arange(1, 151) * 53 + 5      # never on a multiple of the stride
    x[0, few] = np.arange(len(few))
    x[1, many] = np.arange(len(many))
    got = top_ids(x, m)
    assert set(few.tolist()) <= set(got[0].tolist()) and len(set(got[0].tolist())) == m
    assert sorted(got[1].tolist()) == sorted(many[-m:].tolist())


@pytest.mark.parametrize("v, m", [(10, 8), (48, 16), (130, 8), (8763, 16)])
def test_top_ids_finds_the_largest_in_a_short_last_block(v, m):
    """The block path (m <= 16): the largest values sit in the vocab's short last block, vocabs smaller than a
    block, and a row whose finite values are fewer than m."""
    rng = np.random.default_rng(v)
    x = rng.standard_normal((3, v)).astype(np.float32)
    x[0, -3:] = [10.0, 11.0, 12.0]
    x[1, : v // 2] = -np.inf
    x[2] = -np.inf
    x[2, [0, v - 1]] = [1.0, 2.0]
    got = top_ids(x, m)
    for row in range(3):
        assert len(set(got[row].tolist())) == m and (got[row] < v).all()
        assert sorted(x[row, got[row]].tolist()) == sorted(np.sort(x[row])[-m:].tolist())
    assert {v - 3, v - 2, v - 1} <= set(got[0].tolist()) and {0, v - 1} <= set(got[2].tolist())


# ---------------------------------------------------------------- verse-aware repetition control

def verse_block_case(text: str, **kwargs):
    from genrt.decoding.processors import VerseRepetitionBlock
    from genrt.poems.tokenizer import CharTokenizer
    from tests.fixtures_poems import TINY_VOCAB
    tok = CharTokenizer(TINY_VOCAB)
    proc = VerseRepetitionBlock(tok.ids_of("，。？！；"), **kwargs)
    tokens = np.array([[tok.sos_id] + tok.encode_text(text)])
    return tok, proc(tokens, np.zeros((1, len(tok)), np.float32))


def test_a_third_occurrence_in_a_verse_is_banned_but_a_doubled_character_is_not():
    tok, out = verse_block_case("春江江", max_char_repeats=2, no_repeat_verse=False)
    assert out[0, tok.index["江"]] == -np.inf and np.isfinite(out[0, tok.index["春"]])
    tok, out = verse_block_case("春江江，春", max_char_repeats=2, no_repeat_verse=False)   # a new verse resets
    assert np.isfinite(out[0, tok.index["江"]])


def test_a_verse_never_copies_an_earlier_one():
    tok, out = verse_block_case("春江花月夜，春江花月", max_char_repeats=0, no_repeat_verse=True)
    assert out[0, tok.index["夜"]] == -np.inf and np.isfinite(out[0, tok.index["明"]])
    tok, out = verse_block_case("春江，明月光，春江", max_char_repeats=0, no_repeat_verse=True)
    assert out[0, tok.index["，"]] == -np.inf and out[0, tok.index["。"]] == -np.inf


def test_no_verse_is_empty():
    """A mark never opens the poem or follows another (an empty verse), while a one-character verse is still
    never repeated; without no_repeat_verse marks stay free."""
    for text in ("", "春江花月夜，", "春江花月夜。"):
        tok, out = verse_block_case(text, max_char_repeats=0, no_repeat_verse=True)
        assert all(out[0, tok.index[m]] == -np.inf for m in "，。？！；" if m in tok.index), text
        assert np.isfinite(out[0, tok.index["江"]])
    tok, out = verse_block_case("春，江花月夜，", max_char_repeats=0, no_repeat_verse=True)
    assert out[0, tok.index["春"]] == -np.inf and out[0, tok.index["，"]] == -np.inf
    tok, out = verse_block_case("春江花月夜，", max_char_repeats=0, no_repeat_verse=False)
    assert np.isfinite(out[0]).all()


def test_min_new_tokens_holds_off_eos_after_the_prefix():
    proc = MinNewTokens(3, eos_id=2, prefix_len=2)                  # <sos> + one forced id
    for t, banned in ((2, True), (4, True), (5, False), (9, False)):
        out = proc(np.zeros((2, t), np.int64), np.zeros((2, 6), np.float32))
        assert np.isinf(out[:, 2]).all() == banned and np.isfinite(np.delete(out, 2, axis=1)).all()


def test_repetition_penalty_matches_a_whole_vocab_mask():
    """Each id seen in a row (not ignored) is rescaled once, however often it was seen: the same numbers as
    marking a (N, V) mask of seen ids."""
    rng = np.random.default_rng(0)
    for n, t, v in ((1, 1, 7), (3, 12, 9), (5, 40, 50)):
        tokens = rng.integers(0, v, (n, t))
        logits = rng.standard_normal((n, v)).astype(np.float32)
        seen = np.zeros((n, v), bool)
        np.put_along_axis(seen, tokens, True, axis=1)
        seen[:, [1, 2]] = False
        want = logits.copy()
        want[seen] = np.where(want[seen] > 0, want[seen] / 1.3, want[seen] * 1.3)
        assert np.array_equal(RepetitionPenalty(1.3, ignore_ids=[1, 2])(tokens, logits.copy()), want)
