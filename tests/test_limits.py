"""genrt.limits: the one resource budget (counts, array bytes, threads, poem decode and score batches)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from genrt import limits
from genrt.limits import ResourceError

POEMS = SimpleNamespace(max_len=200, d_model=256, num_decoder_layers=4, vocab=tuple(range(8000)))


@pytest.mark.parametrize("threads", [None, 1, 8, np.int64(4), limits.MAX_THREADS])
def test_thread_counts_within_the_budget_pass(threads):
    assert limits.check_threads(threads) == threads


@pytest.mark.parametrize("threads, error", [
    (limits.MAX_THREADS + 1, ResourceError), (100_000, ResourceError), (10**30, ResourceError), (0, ValueError),
    (-3, ValueError), (2.5, ValueError), (True, ValueError), ("4", ValueError),
])
def test_thread_counts_outside_the_budget_are_refused_by_name(threads, error):
    with pytest.raises(error, match="threads"):
        limits.check_threads(threads)


@pytest.mark.parametrize("value", [1, 50, 100, np.int32(7)])
def test_counts_in_range(value):
    assert limits.check_count("n", value, 100) == value


@pytest.mark.parametrize("value, error", [(101, ResourceError), (10**12, ResourceError), (0, ValueError),
                                          (1.0, ValueError), (None, ValueError), (False, ValueError)])
def test_counts_out_of_range(value, error):
    with pytest.raises(error, match="^n "):
        limits.check_count("n", value, 100)


def test_an_array_over_the_budget_is_refused_before_it_exists():
    limits.check_array("images", (1000, 64, 64, 3), 1)
    with pytest.raises(ResourceError, match="images would take .* GiB.*budget.*stream"):
        limits.check_array("images", (10**12, 64, 64, 3), 1, "stream them")


@pytest.mark.parametrize("prompts, beams, ok", [(1, 64, True), (8, 64, True), (64, 64, False), (10**6, 1, False),
                                                (10**9, 64, False)])
def test_poem_decode_budget_counts_prompts_times_beams(prompts, beams, ok):
    if ok:
        limits.check_poem_decode(POEMS, prompts, num_beams=beams)
    else:
        with pytest.raises(ResourceError, match="fewer prompts"):
            limits.check_poem_decode(POEMS, prompts, num_beams=beams)


def test_decode_rows_take_the_widest_of_beams_samples_and_best_of():
    assert limits.decode_rows(3, num_beams=4) == 12
    assert limits.decode_rows(3, num_return_sequences=5, best_of=8) == 24


@pytest.mark.parametrize("batch, ok", [(32, True), (256, True), (1024, False)])
def test_score_batch_budget(batch, ok):
    if ok:
        limits.check_poem_score(POEMS, batch, 80)
    else:
        with pytest.raises(ResourceError, match="smaller batch size"):
            limits.check_poem_score(POEMS, batch, 80)


def test_a_huge_count_is_said_short():
    with pytest.raises(ResourceError, match=r"is 1,000,000; genrt's limit is 10$"):
        limits.check_count("faces", 10**6, 10)
    with pytest.raises(ResourceError, match=r"is about 1\.0e\+300; genrt's limit is 10$"):
        limits.check_count("faces", 10**300, 10)
