"""Lanes (genrt.decoding.lanes): schedulers stepping at once over one model, the rows dealt evenly."""
import threading
import time

import numpy as np
import pytest

from genrt.decoding.lanes import in_lanes, lanes_of, run_requests, split_by_rows
from genrt.decoding.processors import pick_greedy
from genrt.decoding.scheduler import Cancelled, Request, decode
from genrt.decoding.search import BeamSearch, SampleSearch
from tests.decoding_fakes import EOS, TableModel


class LaneModel(TableModel):
    """TableModel that says it has lanes and records which threads step it, and how many at once."""

    def __init__(self, lanes):
        super().__init__(1)
        self.lanes, self.threads, self.inside, self.most_at_once = lanes, set(), 0, 0
        self._lock = threading.Lock()
        self._both_in = threading.Barrier(lanes, timeout=5)

    def step(self, tokens, cache):
        with self._lock:
            self.threads.add(threading.get_ident())
            self.inside += 1
            self.most_at_once = max(self.most_at_once, self.inside)
        if self.calls == 0:
            self._both_in.wait()               # the first calls of all lanes meet: they do run at once
        try:
            return super().step(tokens, cache)
        finally:
            with self._lock:
                self.inside -= 1


def _request(i, beams):
    prefix = np.ones((beams, 1), np.int64)
    search = (BeamSearch(prefix, 8, EOS, [], num_return=1) if beams > 1
              else SampleSearch(prefix, 8, EOS, [], pick_greedy))
    return Request([4, i], prefix, search)


def test_rows_are_dealt_to_the_emptiest_lane_in_order():
    requests = [_request(i, b) for i, b in enumerate([4, 1, 1, 1, 1, 2])]
    parts = split_by_rows(requests, 2)
    assert [[r.source[1] for r in p] for p in parts] == [[0, 5], [1, 2, 3, 4]]    # 4 rows each, then a tie
    assert [sum(r.rows for r in p) for p in parts] == [6, 4]
    assert len(split_by_rows(requests[:1], 4)) == 1           # never an empty lane
    assert split_by_rows([_request(i, 1) for i in range(4)], 2)[0][1].source[1] == 2


def test_lanes_decode_at_once_and_give_what_one_scheduler_gives():
    requests = [_request(i, b) for i, b in enumerate([1, 3, 1, 2, 1, 1, 3, 1])]
    model = LaneModel(2)
    run_requests(model, requests, max_rows=64)
    alone = decode(TableModel(1), [r.source for r in requests],
                   [_request(i, r.rows).search for i, r in enumerate(requests)])
    assert [r.result for r in requests] == alone
    assert len(model.threads) == 2 and model.most_at_once == 2


class FailingLaneModel(TableModel):
    """Fails on the third step of the rows whose source is [4, 0]; the other rows take 2 ms a step."""
    lanes = 2

    def __init__(self):
        super().__init__(1)
        self.other_steps = 0

    def step(self, tokens, cache):
        if any(row[0] == (4, 0) for row in cache):
            if len(cache[0]) >= 4:
                raise RuntimeError("decoder failed")
        else:
            self.other_steps += 1
            time.sleep(0.002)
        return super().step(tokens, cache)


def test_a_failing_lane_stops_the_others_and_raises():
    requests = [Request([4, i], np.ones((1, 1), np.int64),
                        SampleSearch(np.ones((1, 1), np.int64), 200, -1, [], pick_greedy)) for i in range(2)]
    model = FailingLaneModel()
    with pytest.raises(RuntimeError, match="decoder failed"):
        run_requests(model, requests, max_rows=8)
    assert model.other_steps < 150                        # the healthy lane stopped, not after its 200 steps
    assert requests[1].done and isinstance(requests[1].error, Cancelled)


def test_in_lanes_keeps_order_and_raises_after_joining_every_lane():
    assert in_lanes(lambda x: x * 2, [1, 2, 3]) == [2, 4, 6]
    finished = []

    def work(x):
        if x == 2:
            raise ValueError("lane 2 failed")
        finished.append(x)
        return x
    with pytest.raises(ValueError, match="lane 2 failed"):
        in_lanes(work, [1, 2, 3])
    assert sorted(finished) == [1, 3]


def test_models_without_lanes_have_one():
    assert lanes_of(TableModel()) == 1 and lanes_of(LaneModel(3)) == 3
