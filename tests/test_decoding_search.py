"""Search strategies (genrt.decoding.search) on a fake model whose logits depend on the whole prefix."""
import itertools

import numpy as np
import pytest

from genrt.decoding.processors import pick_greedy
from genrt.decoding.scheduler import decode
from genrt.decoding.search import BeamSampling, BeamSearch, SampleSearch
from tests.decoding_fakes import EOS, V, TableModel, sequence_logprob


def greedy(model, max_new=12, prefix=(1,), processors=(), source=(4,)):
    return decode(model, [list(source)], [SampleSearch(np.array([prefix]), max_new, EOS, list(processors),
                                                       pick_greedy)])[0][0]


def beams(model, k, max_new, source=(4,), sampling=None, num_return=1):
    return decode(model, [list(source)], [BeamSearch(np.ones((k, 1), np.int64), max_new, EOS, [],
                                                     num_return=num_return, sampling=sampling)])[0]


def test_greedy_follows_argmax_until_eos():
    model = TableModel(1)
    hyp = greedy(model, 10)
    prefix = [1]
    for t in hyp.tokens + ([EOS] if hyp.finished else []):
        assert t == int(model.logits_for(prefix, (4,)).argmax())
        prefix.append(t)


@pytest.mark.parametrize("max_new", [1, 3, 7])
def test_one_decoder_call_per_token_and_none_after_the_last(max_new):
    model = TableModel(4)
    no_eos = lambda tokens, logits: np.where(np.arange(V) == EOS, -np.inf, logits)
    hyp = greedy(model, max_new, processors=[no_eos])
    assert len(hyp.tokens) == max_new and model.calls == max_new and not hyp.finished


def test_forced_ids_are_fed_one_per_step_before_the_search_starts():
    model, seen = TableModel(5), []

    def record(tokens, logits):
        seen.append(tokens.tolist())
        return logits
    hyp = greedy(model, 5, prefix=(1, 3, 4), processors=[record])
    assert seen == [[[1, 3, 4] + hyp.tokens[:i]] for i in range(len(seen))]
    assert model.calls == 2 + len(seen)                       # two forced steps whose logits nobody reads


def test_greedy_score_is_the_models_log_probability_of_the_chosen_tokens():
    model = TableModel(3)
    hyp = greedy(model, 6)
    assert hyp.score == pytest.approx(sequence_logprob(model, hyp.tokens + [EOS] * hyp.finished), abs=1e-5)
    assert hyp.score < 0


def test_beam_with_full_width_finds_the_best_sequence():
    """With num_beams = vocab size and a short limit, beam search is exhaustive: compare with brute force."""
    for seed in range(5):
        model = TableModel(seed)
        max_new = 3
        best = max((seq for n in range(1, max_new + 1) for seq in itertools.product(range(V), repeat=n)
                    if seq[-1] == EOS and EOS not in seq[:-1]),
                   key=lambda s: sequence_logprob(model, s) / len(s))
        hyps = beams(model, V, max_new)
        if any(h.finished for h in hyps):
            assert hyps[0].tokens == list(best[:-1])
            np.testing.assert_allclose(hyps[0].score, sequence_logprob(model, best), rtol=1e-6)


def test_beam_returns_requested_number_sorted():
    hyps = beams(TableModel(7), 4, 8, num_return=3)
    assert len(hyps) == 3
    norm = [h.score / (len(h.tokens) + h.finished) for h in hyps]
    assert norm == sorted(norm, reverse=True)


def test_beam_one_equals_greedy():
    model = TableModel(3)
    g, b = greedy(model, 12), beams(model, 1, 12)[0]
    if g.finished:
        assert b.tokens == g.tokens


def _sampling(seed, temperature=1.0, top_k=0, top_p=1.0):
    return BeamSampling(np.random.default_rng(seed), temperature, top_k, top_p)


def test_beam_sampling_near_zero_temperature_is_beam_search():
    for seed in range(6):
        model = TableModel(seed)
        for source in ((1,), (3,)):
            exact = beams(model, 3, 8, source, num_return=3)
            cold = beams(model, 3, 8, source, _sampling(seed, temperature=1e-4), num_return=3)
            assert [h.tokens for h in cold] == [h.tokens for h in exact]


def test_beam_sampling_with_top_k_one_is_greedy():
    model = TableModel(4)
    g, sampled = greedy(model, 12), beams(model, 3, 12, sampling=_sampling(0, top_k=1))[0]
    assert sampled.tokens == g.tokens and sampled.finished == g.finished


def test_beam_sampling_scores_are_the_models_log_probs_and_seeds_matter():
    model = TableModel(5)
    outputs = set()
    for seed in range(12):
        hyp = beams(model, 2, 6, sampling=_sampling(seed, temperature=2.0))[0]
        if hyp.finished:
            np.testing.assert_allclose(hyp.score, sequence_logprob(model, hyp.tokens + [EOS]), rtol=1e-5)
        outputs.add(tuple(hyp.tokens))
        assert beams(model, 2, 6, sampling=_sampling(seed, temperature=2.0))[0] == hyp   # same stream, same beams
    assert len(outputs) > 2


@pytest.mark.parametrize("make", [
    lambda: SampleSearch(np.ones((3, 1), np.int64), 9, EOS, [], lambda lg: np.random.default_rng(0).integers(0, V, 3),
                         best_of=True, num_return=1),
    lambda: BeamSearch(np.ones((3, 1), np.int64), 9, EOS, []),
    lambda: BeamSearch(np.ones((4, 1), np.int64), 9, EOS, [], sampling=_sampling(1, temperature=1.5)),
])
def test_settled_ids_always_begin_the_result(make):
    """What streaming shows (settled) grows and never contradicts the hypothesis returned at the end."""
    model, search = TableModel(8), make()
    shown = []
    from genrt.decoding.scheduler import Request, Scheduler
    scheduler = Scheduler(model)
    request = scheduler.submit(Request([4], search.prefix, search))
    while not request.done:
        scheduler.step()
        ids = search.settled()
        assert ids[:len(shown)] == shown
        shown = ids
    assert request.result[0].tokens[:len(shown)] == shown


def test_a_row_the_processors_empty_ends_even_when_others_skip_the_check():
    from genrt.decoding.processors import MinNewTokens, SuppressTokens, apply_processors, could_empty_a_row
    fixed = [SuppressTokens([0, 1, 3]), MinNewTokens(5, EOS, 1)]
    assert not could_empty_a_row(fixed, V)                       # 4 of 6 ids at most: the check is skipped
    assert could_empty_a_row([SuppressTokens([0, 1, 3, 4, 5])] + fixed[1:], V)   # together they cover the vocab
    ban_all_but_eos = lambda tokens, logits: np.where(np.arange(V) == EOS, logits, -np.inf)
    assert could_empty_a_row(fixed + [ban_all_but_eos], V)       # undeclared: may empty a row
    logits = apply_processors(fixed + [ban_all_but_eos], np.ones((1, 1), np.int64),
                              np.zeros((1, V), np.float32), EOS)
    assert logits.argmax() == EOS and np.isfinite(logits[0, EOS])


def test_sampling_searches_picking_together_step_as_each_alone():
    """update_sampled: searches with their own processors and streams, one candidate pass for all their rows,
    give each search's own history and scores."""
    from genrt.decoding.processors import SuppressTokens, make_sampler
    rng = np.random.default_rng(0)

    def searches():
        return [SampleSearch(np.ones((n, 1), np.int64), 6, EOS, procs,
                             make_sampler([np.random.default_rng([k, j]) for j in range(n)], 0.9, 3, 0.95))
                for k, (n, procs) in enumerate([(2, []), (1, [SuppressTokens([2])]), (3, [SuppressTokens([3, 4])])])]
    together, alone = searches(), searches()
    assert len({s.sampler_key for s in together}) == 1 and together[0].sampler_key is not None
    for _ in range(6):
        logits = rng.standard_normal((6, V)).astype(np.float32)
        log_norm = rng.standard_normal(6)
        rows = [slice(0, 2), slice(2, 3), slice(3, 6)]
        got = SampleSearch.update_sampled(together, rows, logits.copy(), log_norm)
        want = [s.update(logits[r].copy(), log_norm[r]) for s, r in zip(alone, rows)]
        assert [(u.tokens.tolist(), u.done) for u in got] == [(u.tokens.tolist(), u.done) for u in want]
    for a, b in zip(together, alone):
        assert np.array_equal(a.generated(), b.generated()) and np.array_equal(a.score, b.score)


def test_processors_shared_by_sampling_searches_run_once_over_all_their_rows():
    """Searches of one length whose lists hold the same processor object at a position run it once over all their
    rows (others search by search): every row still gets what its own list gives it, rows left with nothing end."""
    import genrt.decoding.search as search
    from genrt.decoding.processors import make_sampler

    class BanLast:                       # row-wise, reads the tokens: a misaligned row would show
        def __init__(self):
            self.rows_seen: list[int] = []

        def __call__(self, tokens, logits):
            self.rows_seen.append(len(tokens))
            logits[np.arange(len(logits)), tokens[:, -1]] = -np.inf
            return logits

    class BanIds:
        def __init__(self, ids):
            self.ids = list(ids)

        def __call__(self, tokens, logits):
            logits[:, self.ids] = -np.inf
            return logits

    class EmptyAfter3:                   # may leave a row nothing: the row must take <eos>
        def __call__(self, tokens, logits):
            logits[tokens[:, -1] == 3] = -np.inf
            return logits
    shared, empty = BanLast(), EmptyAfter3()

    def searches():
        return [SampleSearch(np.ones((n, 1), np.int64), 6, EOS, [shared, BanIds(ids), empty],
                             make_sampler([np.random.default_rng([k, j]) for j in range(n)], 1.0, 0, 1.0))
                for k, (n, ids) in enumerate([(2, [4]), (1, [5]), (3, [])])]
    together, alone = searches(), searches()
    assert search._processor_runs(together) == [(0, 3)]
    rng = np.random.default_rng(1)
    for _ in range(6):
        logits = rng.standard_normal((6, V)).astype(np.float32)
        log_norm = rng.standard_normal(6)
        rows = [slice(0, 2), slice(2, 3), slice(3, 6)]
        shared.rows_seen.clear()
        got = SampleSearch.update_sampled(together, rows, logits.copy(), log_norm)
        assert shared.rows_seen == [6]                                  # once, over all six rows
        want = [s.update(logits[r].copy(), log_norm[r]) for s, r in zip(alone, rows)]
        assert [(u.tokens.tolist(), u.done) for u in got] == [(u.tokens.tolist(), u.done) for u in want]
    for a, b in zip(together, alone):
        assert np.array_equal(a.generated(), b.generated()) and np.array_equal(a.score, b.score)


@pytest.mark.parametrize("searches", [1, 3])
def test_new_beams_keep_a_child_of_each_row_in_that_rows_slot(searches):
    from genrt.decoding.search import _stay_in_place
    rng = np.random.default_rng(0)
    for _ in range(300):
        k = int(rng.integers(1, 7))
        rows = rng.integers(0, k, (searches, k))
        order = _stay_in_place(rows)                                    # (G, K): the beam each slot holds
        for g in range(searches):
            assert sorted(order[g].tolist()) == list(range(k))          # a permutation of the beams
            placed = rows[g][order[g]]
            copies = int((placed != np.arange(k)).sum())
            assert copies == k - len(set(rows[g].tolist()))             # only second children are copied
            assert all(placed[r] == r for r in set(rows[g].tolist()))


def test_beam_slots_do_not_change_what_beam_search_returns(monkeypatch):
    """Beams stay in their rows when they can (fewer cache copies); the hypotheses are those of rank order."""
    import genrt.decoding.search as search
    model = TableModel(3)
    placed = [[(h.tokens, h.score) for h in beams(model, k, 9, num_return=k)] for k in (2, 3, 5)]
    monkeypatch.setattr(search, "_stay_in_place", lambda rows: np.broadcast_to(np.arange(rows.shape[1]), rows.shape))
    ranked = [[(h.tokens, h.score) for h in beams(model, k, 9, num_return=k)] for k in (2, 3, 5)]
    assert placed == ranked
