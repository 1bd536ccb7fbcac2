"""Search strategies on a fake numpy model whose next-token logits depend on the whole prefix."""
import itertools

import numpy as np
import pytest

from genrt.poems.processors import log_softmax, pick_greedy
from genrt.poems.search import BeamSampling, beam_search, generate_tokens, iter_tokens

EOS, V = 2, 6


class TableModel:
    """logits = f(prefix) from a seeded hash: deterministic, prefix-dependent, no real cache."""

    def __init__(self, seed=0):
        self.seed = seed
        self.calls = 0

    def start(self, sources, copies=1):
        return np.zeros((len(sources) * copies, 0), np.int64)

    def logits_for(self, prefix):
        rng = np.random.default_rng(abs(hash((self.seed, tuple(prefix)))) % 2**32)
        return (rng.standard_normal(V) * 2).astype(np.float32)

    def step(self, tokens, cache):
        self.calls += 1
        cache = np.concatenate([cache, tokens], axis=1)
        return np.stack([self.logits_for(row.tolist()) for row in cache]), cache

    @staticmethod
    def reorder(cache, rows):
        return cache[rows]


def sequence_logprob(model, tokens):
    """Sum of log-probs of `tokens` (ending in EOS) after <sos>."""
    prefix, total = [1], 0.0
    for t in tokens:
        total += float(log_softmax(model.logits_for(prefix)[None])[0, t])
        prefix.append(t)
    return total


def test_greedy_follows_argmax_until_eos():
    model = TableModel(1)
    hyp = generate_tokens(model, model.start([[4]]), np.array([[1]]), 10, EOS, [], pick_greedy)[0]
    prefix = [1]
    for t in hyp.tokens + ([EOS] if hyp.finished else []):
        assert t == int(model.logits_for(prefix).argmax())
        prefix.append(t)


def test_iter_tokens_stops_when_every_row_ended():
    model = TableModel(2)
    steps = list(iter_tokens(model, model.start([[4], [5]]), np.ones((2, 1), np.int64), 50, EOS, [], pick_greedy))
    assert len(steps) <= 50
    _, alive, _ = steps[-1]
    assert not alive.any() or len(steps) == 50


@pytest.mark.parametrize("max_new", [1, 3, 7])
def test_one_decoder_call_per_token_and_none_after_the_last(max_new):
    model = TableModel(4)
    steps = list(iter_tokens(model, model.start([[4]]), np.ones((1, 1), np.int64), max_new, EOS,
                             [lambda tokens, logits: np.where(np.arange(V) == EOS, -np.inf, logits)], pick_greedy))
    assert len(steps) == max_new and model.calls == max_new       # the prefix call gives the first token


def test_greedy_score_is_the_models_log_probability_of_the_chosen_tokens():
    from genrt.poems.processors import log_softmax
    model = TableModel(3)
    prefix = np.ones((1, 1), np.int64)
    hyp = generate_tokens(model, model.start([[4]]), prefix, 6, EOS, [], pick_greedy)[0]
    seq, expected = [1], 0.0
    for t in hyp.tokens + ([EOS] if hyp.finished else []):
        expected += float(log_softmax(model.logits_for(seq)[None].astype(np.float64))[0, t])
        seq.append(t)
    assert hyp.score == pytest.approx(expected, abs=1e-5) and hyp.score < 0


def test_beam_with_full_width_finds_the_best_sequence():
    """With num_beams = vocab size and a short limit, beam search is exhaustive: compare with brute force."""
    for seed in range(5):
        model = TableModel(seed)
        max_new = 3
        best = max((seq for n in range(1, max_new + 1) for seq in itertools.product(range(V), repeat=n)
                    if seq[-1] == EOS and EOS not in seq[:-1]),
                   key=lambda s: sequence_logprob(model, s) / len(s))
        hyps = beam_search(model, model.start([[4]], V), np.ones((V, 1), np.int64), V, max_new, EOS, [])
        finished = [h for h in hyps[0] if h.finished]
        if finished:
            top = hyps[0][0]
            assert top.tokens == list(best[:-1])
            np.testing.assert_allclose(top.score, sequence_logprob(model, best), rtol=1e-6)


def test_beam_returns_requested_number_sorted():
    model = TableModel(7)
    hyps = beam_search(model, model.start([[4], [5]], 4), np.ones((8, 1), np.int64), 4, 8, EOS, [], num_return=3)
    assert len(hyps) == 2
    for per_prompt in hyps:
        assert len(per_prompt) == 3
        norm = [h.score / (len(h.tokens) + h.finished) for h in per_prompt]
        assert norm == sorted(norm, reverse=True)


def test_beam_one_equals_greedy():
    model = TableModel(3)
    greedy = generate_tokens(model, model.start([[4]]), np.array([[1]]), 12, EOS, [], pick_greedy)[0]
    beam = beam_search(model, model.start([[4]], 1), np.array([[1]]), 1, 12, EOS, [])[0][0]
    if greedy.finished:
        assert beam.tokens == greedy.tokens


def _beams(model, prefixes, k, max_new, sampling=None, num_return=1):
    prefix = np.repeat(np.asarray(prefixes, np.int64), k, axis=0)                       # (B*K, P)
    return beam_search(model, model.start(prefixes, k), prefix, k, max_new, EOS, [], num_return=num_return,
                       sampling=sampling)


def _sampling(seeds, temperature=1.0, top_k=0, top_p=1.0):
    return BeamSampling([np.random.default_rng(s) for s in seeds], temperature, top_k, top_p)


def test_beam_sampling_near_zero_temperature_is_beam_search():
    for seed in range(6):
        model = TableModel(seed)
        exact = _beams(model, [[1], [3]], 3, 8, num_return=3)
        cold = _beams(model, [[1], [3]], 3, 8, _sampling([seed, seed + 1], temperature=1e-4), num_return=3)
        assert [[h.tokens for h in hs] for hs in cold] == [[h.tokens for h in hs] for hs in exact]


def test_beam_sampling_with_top_k_one_is_greedy():
    model = TableModel(4)
    greedy = generate_tokens(model, model.start([[4]]), np.array([[1]]), 12, EOS, [], pick_greedy)[0]
    sampled = _beams(model, [[1]], 3, 12, _sampling([0], top_k=1))[0][0]
    assert sampled.tokens == greedy.tokens and sampled.finished == greedy.finished


def test_beam_sampling_scores_are_the_models_log_probs_and_seeds_matter():
    model = TableModel(5)
    outputs = set()
    for seed in range(12):
        hyp = _beams(model, [[1]], 2, 6, _sampling([seed], temperature=2.0))[0][0]
        if hyp.finished:
            np.testing.assert_allclose(hyp.score, sequence_logprob(model, hyp.tokens + [EOS]), rtol=1e-5)
        outputs.add(tuple(hyp.tokens))
        again = _beams(model, [[1]], 2, 6, _sampling([seed], temperature=2.0))[0][0]
        assert again == hyp                                                   # same stream, same beams
    assert len(outputs) > 2


def test_beam_sampling_prompt_draws_from_its_own_stream():
    model = TableModel(6)
    alone = _beams(model, [[3]], 3, 10, _sampling([11], temperature=1.5))[0]
    batch = _beams(model, [[1], [3], [5]], 3, 10, _sampling([2, 11, 4], temperature=1.5))[1]
    assert [h.tokens for h in batch] == [h.tokens for h in alone]
    with pytest.raises(ValueError, match="2 random streams for 3 prompts"):
        _beams(model, [[1], [3], [5]], 3, 10, _sampling([2, 11]))


def test_processors_see_exactly_the_ids_so_far():
    model, seen = TableModel(5), []

    def record(tokens, logits):
        seen.append(tokens.tolist())
        return logits
    steps = list(iter_tokens(model, model.start([[4]]), np.array([[1, 3]]), 5, EOS, [record], pick_greedy))
    ids = [int(new[0]) for new, _, _ in steps]
    assert seen == [[[1, 3] + ids[:i]] for i in range(len(steps))]


def test_a_row_the_processors_empty_ends_even_when_others_skip_the_check():
    from genrt.poems.processors import MinNewTokens, SuppressTokens
    from genrt.poems.search import apply_processors, could_empty_a_row
    fixed = [SuppressTokens([0, 1, 3]), MinNewTokens(5, EOS, 1)]
    assert not could_empty_a_row(fixed, V)                       # 4 of 6 ids at most: the check is skipped
    assert could_empty_a_row([SuppressTokens([0, 1, 3, 4, 5])] + fixed[1:], V)   # together they cover the vocab
    ban_all_but_eos = lambda tokens, logits: np.where(np.arange(V) == EOS, logits, -np.inf)
    assert could_empty_a_row(fixed + [ban_all_but_eos], V)       # undeclared: may empty a row
    logits = apply_processors(fixed + [ban_all_but_eos], np.ones((1, 1), np.int64),
                              np.zeros((1, V), np.float32), EOS)
    assert logits.argmax() == EOS and np.isfinite(logits[0, EOS])
