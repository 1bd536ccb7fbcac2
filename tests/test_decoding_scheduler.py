"""The scheduler (genrt.decoding.scheduler): requests join and leave between steps, one call per step."""
import numpy as np
import pytest

from genrt.decoding.processors import make_sampler, pick_greedy
from genrt.decoding.scheduler import Cancelled, Request, Scheduler, decode, fill_gaps
from genrt.decoding.search import BeamSampling, BeamSearch, SampleSearch
from tests.decoding_fakes import EOS, TableModel


def _search(kind, seed=0, max_new=10):
    if kind == "greedy":
        return SampleSearch(np.ones((1, 1), np.int64), max_new, EOS, [], pick_greedy)
    if kind == "sample":
        return SampleSearch(np.ones((2, 1), np.int64), max_new, EOS, [],
                            make_sampler([np.random.default_rng([seed, j]) for j in range(2)], 1.3, 0, 1.0))
    if kind == "beam":
        return BeamSearch(np.ones((3, 1), np.int64), max_new, EOS, [], num_return=2)
    return BeamSearch(np.ones((2, 1), np.int64), max_new, EOS, [],
                      sampling=BeamSampling(np.random.default_rng(seed), 1.5))


def _alone(kind, source, seed=0):
    return decode(TableModel(1), [source], [_search(kind, seed)])[0]


def test_mixed_requests_in_one_call_per_step_give_what_each_gives_alone():
    kinds = ["greedy", "sample", "beam", "beam-sampled"] * 2
    sources = [[4 + i % 3, i] for i in range(len(kinds))]
    model = TableModel(1)
    together = decode(model, sources, [_search(k, i) for i, k in enumerate(kinds)])
    assert together == [_alone(k, s, i) for i, (k, s) in enumerate(zip(kinds, sources))]
    assert max(model.rows_per_call) == sum(r.rows for r in (_search(k) for k in kinds))   # all in each call


@pytest.mark.parametrize("seed", range(6))
def test_random_arrivals_and_a_row_limit_change_nothing(seed):
    """Requests arrive at random steps; at most 5 rows run at once, the rest wait and join as others leave."""
    rng = np.random.default_rng(seed)
    kinds = [str(k) for k in rng.choice(["greedy", "sample", "beam", "beam-sampled"], 9)]
    sources = [[4, int(s)] for s in rng.integers(5, 30, len(kinds))]
    arrivals = sorted(rng.integers(0, 12, len(kinds)).tolist())
    model = TableModel(1)
    scheduler = Scheduler(model, max_rows=5)
    requests, step = [], 0
    while len(requests) < len(kinds) or not scheduler.idle:
        while len(requests) < len(kinds) and arrivals[len(requests)] <= step:
            i = len(requests)
            search = _search(kinds[i], i)
            requests.append(scheduler.submit(Request(sources[i], search.prefix, search)))
        scheduler.step()
        assert scheduler.active_rows <= 5
        step += 1
    assert [r.result for r in requests] == [_alone(k, s, i) for i, (k, s) in enumerate(zip(kinds, sources))]
    assert max(model.rows_per_call) <= 5


def test_cancelled_requests_leave_at_the_next_step_and_free_their_rows():
    model = TableModel(2)
    scheduler = Scheduler(model, max_rows=4)
    searches = [_search("beam", max_new=50), _search("greedy", max_new=50)]
    first, second = (scheduler.submit(Request([4], s.prefix, s)) for s in searches)
    scheduler.step()
    assert scheduler.active_rows == 4
    first.cancel()
    scheduler.step()
    assert first.done and isinstance(first.error, Cancelled) and scheduler.active_rows == 1
    waiting = scheduler.submit(Request([5], searches[1].prefix, _search("greedy")))
    waiting.cancel(TimeoutError("late"))
    scheduler.step()
    assert waiting.done and isinstance(waiting.error, TimeoutError)
    scheduler.run()
    assert second.result == _alone("greedy", [4]) or len(second.result[0].tokens) <= 50


def test_a_failing_request_fails_alone():
    def broken(tokens, logits):
        raise RuntimeError("processor broke")
    bad = SampleSearch(np.ones((1, 1), np.int64), 5, EOS, [broken], pick_greedy)
    good = _search("greedy")
    scheduler = Scheduler(TableModel(1))
    r_bad, r_good = scheduler.submit(Request([4], bad.prefix, bad)), scheduler.submit(Request([4], good.prefix, good))
    scheduler.run()
    assert isinstance(r_bad.error, RuntimeError) and r_good.result == _alone("greedy", [4])


class FailingModel(TableModel):
    """A TableModel whose encoder (`start`) or decoder (`step`) raises from a given call on."""

    def __init__(self, fail_in: str, after: int = 0):
        super().__init__(1)
        self.fail_in, self.after, self.made = fail_in, after, {"start": 0, "step": 0}

    def _maybe_fail(self, what):
        self.made[what] += 1
        if what == self.fail_in and self.made[what] > self.after:
            raise RuntimeError(f"{what} failed")

    def start(self, sources, copies=1):
        self._maybe_fail("start")
        return super().start(sources, copies)

    def step(self, tokens, cache):
        self._maybe_fail("step")
        return super().step(tokens, cache)


def test_an_encoder_failure_fails_the_requests_it_was_admitting_none_is_lost():
    scheduler = Scheduler(FailingModel("start"), max_rows=8)
    requests = [scheduler.submit(Request([4], s.prefix, s)) for s in (_search("greedy"), _search("beam"))]
    ended = scheduler.step()
    assert set(map(id, ended)) == set(map(id, requests)) and scheduler.idle
    assert all(r.done and str(r.error) == "start failed" for r in requests)


def test_a_decoder_failure_ends_every_request_of_the_step_with_the_ones_cancelled_in_it():
    """A request cancelled in the step whose decoder call fails is reported with its own reason; the others fail
    with the model's error; the waiting ones too; nothing is left unfinished or reported twice."""
    def no_eos(tokens, logits):
        logits[:, EOS] = -np.inf
        return logits
    scheduler = Scheduler(FailingModel("step", after=2), max_rows=4)
    searches = (SampleSearch(np.ones((1, 1), np.int64), 50, EOS, [no_eos], pick_greedy),
                SampleSearch(np.ones((2, 1), np.int64), 50, EOS, [no_eos], pick_greedy))
    active = [scheduler.submit(Request([4], s.prefix, s)) for s in searches]
    scheduler.step(), scheduler.step()
    assert scheduler.active_rows == 3
    waiting = scheduler.submit(Request([5], np.ones((3, 1), np.int64), _search("beam")))   # no room: waits
    active[0].cancel(TimeoutError("late"))
    ended = scheduler.step()
    assert sorted(map(id, ended)) == sorted(map(id, active + [waiting])) and scheduler.idle
    assert isinstance(active[0].error, TimeoutError)
    assert str(active[1].error) == "step failed" and str(waiting.error) == "step failed"


def test_a_cancel_after_the_request_finished_leaves_its_result():
    scheduler = Scheduler(TableModel(1))
    request = scheduler.submit(Request([4], _search("greedy").prefix, _search("greedy")))
    scheduler.run()
    result = request.result
    request.cancel(TimeoutError("late"))             # e.g. a timeout that fires as the request ends
    request._finish(error=RuntimeError("again"))
    assert request.error is None and request.result == result == _alone("greedy", [4])


def test_a_request_larger_than_the_row_limit_is_refused():
    with pytest.raises(ValueError, match="needs 3 rows; this scheduler holds at most 2"):
        Scheduler(TableModel(), max_rows=2).submit(Request([4], np.ones((3, 1), np.int64), _search("beam")))
    with pytest.raises(ValueError, match="max_rows"):
        Scheduler(TableModel(), max_rows=0)


def count_group_updates(monkeypatch, search_class) -> tuple[list[int], object]:
    """Record the size of every group `search_class.update_group` steps -> (sizes, the original update_group)."""
    calls, original = [], search_class.update_group

    def counting(searches, logits, log_norm):
        calls.append(len(searches))
        return original(searches, logits, log_norm)
    monkeypatch.setattr(search_class, "update_group", staticmethod(counting))
    return calls, original


def test_greedy_requests_with_shared_processors_step_as_one(monkeypatch):
    """Consecutive greedy searches with the same processor objects at the same length are updated together, and
    each still gets what it gets alone; a different processor list or length splits the group."""
    from genrt.decoding.processors import SuppressTokens
    shared = [SuppressTokens([0, 3])]
    calls, original = count_group_updates(monkeypatch, SampleSearch)
    make = lambda procs, prefix=(1,): SampleSearch(np.array([prefix]), 8, EOS, procs, pick_greedy)  # noqa: E731
    searches = [make(shared), make(shared), make(shared), make([SuppressTokens([0, 3])]), make(shared, (1, 4))]
    sources = [[4, i] for i in range(len(searches))]
    together = decode(TableModel(3), sources, searches)
    monkeypatch.setattr(SampleSearch, "update_group", staticmethod(original))
    alone = [decode(TableModel(3), [s], [make(p.processors, tuple(p.prefix[0]))])[0]
             for s, p in zip(sources, searches)]
    assert together == alone
    assert 3 in calls                                     # the three sharing searches stepped as one group


def test_a_failing_group_fails_its_members_only():
    def broken(tokens, logits):
        raise RuntimeError("processor broke")
    shared = [broken]
    group = [SampleSearch(np.ones((1, 1), np.int64), 5, EOS, shared, pick_greedy) for _ in range(2)]
    other = _search("greedy")
    scheduler = Scheduler(TableModel(1))
    requests = [scheduler.submit(Request([4], s.prefix, s)) for s in [*group, other]]
    scheduler.run()
    assert all(isinstance(r.error, RuntimeError) for r in requests[:2]) and requests[2].result == _alone("greedy", [4])


def test_beam_searches_with_shared_processors_step_as_one(monkeypatch):
    """Best-first beam searches with the same processor objects and length are updated together (one candidate
    selection for all), each getting what it gets alone, also when a processor leaves fewer live candidates than
    beams and <eos> candidates fill the finished pools; sampled beams step alone."""
    narrow = lambda tokens, logits: np.where(np.arange(logits.shape[1]) % 3 == 0, -np.inf, logits)  # noqa: E731
    shared = [narrow]
    calls, original = count_group_updates(monkeypatch, BeamSearch)
    make = lambda procs, k=4: BeamSearch(np.ones((k, 1), np.int64), 7, EOS, procs, num_return=2)  # noqa: E731
    searches = [make(shared), make(shared), make(shared), make([]), make([]), make(shared, 2), _search("beam-sampled")]
    sources = [[4, i] for i in range(len(searches))]
    together = decode(TableModel(5), sources, searches)
    monkeypatch.setattr(BeamSearch, "update_group", staticmethod(original))
    alone = [decode(TableModel(5), [s], [make(p.processors, p.k) if p.sampling is None else _search("beam-sampled")])[0]
             for s, p in zip(sources, searches)]
    assert together == alone
    assert 3 in calls and 2 in calls                       # the sharing searches stepped as groups


def test_a_gap_takes_the_last_request_of_its_size():
    a, b, c, d = "abcd"
    # rows a(1) gap(2) b(1) c(2): c moves into the gap, b stays where it is
    assert [r for r, _, _ in fill_gaps([(a, 0, 1), (None, 1, 2), (b, 3, 1), (c, 4, 2)])] == [a, c, b]
    # a(1) gap(1) b(2) gap(1) d(1): d fills the first gap, and the second is then at the end
    layout = [(a, 0, 1), (None, 1, 1), (b, 2, 2), (None, 4, 1), (d, 5, 1)]
    assert fill_gaps(layout) == [(a, 0, 1), (d, 5, 1), (b, 2, 2)]
    # no request of the gap's size: the rows after it move down, in order
    assert [r for r, _, _ in fill_gaps([(a, 0, 1), (None, 1, 3), (b, 4, 1), (c, 5, 2)])] == [a, b, c]
    assert fill_gaps([(None, 0, 1), (None, 1, 1)]) == []
    assert [r for r, _, _ in fill_gaps([(a, 0, 1), (None, 1, 1), (None, 2, 1)])] == [a]
