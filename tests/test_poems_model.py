"""genrt.poems.model helpers that need no exported model (the graphs themselves: test_export_poems.py)."""
import numpy as np
import pytest

from genrt.poems.model import changed_rows, move_rows, pad_batch


@pytest.mark.parametrize("rows", [[0, 1, 2, 3], [0, 0, 1, 2], [3, 2, 1, 0], [1, 1, 1, 1], [2, 0, 3, 0]])
def test_move_rows_equals_fancy_indexing(rows):
    rows = np.array(rows)
    x = np.random.default_rng(0).standard_normal((4, 2, 5, 3)).astype(np.float32)
    want = x[rows]
    got = move_rows(x, rows)
    np.testing.assert_array_equal(got, want)
    assert got is x, "a writable cache array is rearranged in place"
    y = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(move_rows(y.copy(), rows, changed_rows(rows)), y[rows])
    assert changed_rows(rows).tolist() == [i for i in range(4) if rows[i] != i]


def test_move_rows_copies_a_read_only_array():
    x = np.arange(12.0).reshape(4, 3)
    x.flags.writeable = False
    rows = np.array([1, 1, 0, 2])
    got = move_rows(x, rows)
    np.testing.assert_array_equal(got, np.arange(12.0).reshape(4, 3)[rows])
    assert got is not x


def test_pad_batch_right_pads_and_masks():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0)
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0]])
    assert ids.dtype == np.int64 and mask.dtype == np.float32


def test_pad_batch_to_a_given_width_and_aligned_widths():
    from genrt.contract import CACHE_ALIGN
    from genrt.poems.model import aligned
    ids, mask = pad_batch([[5, 6]], pad_id=0, width=4)
    np.testing.assert_array_equal(ids, [[5, 6, 0, 0]])
    assert [aligned(w) for w in (0, 1, CACHE_ALIGN, CACHE_ALIGN + 1)] == [CACHE_ALIGN, CACHE_ALIGN, CACHE_ALIGN,
                                                                          2 * CACHE_ALIGN]


def test_join_step_and_reorder_keep_each_rows_own_slots(tiny_poems_dir):
    """Rows that joined later keep their own positions; unfilled slots stay masked and zero; rows leave."""
    from genrt.contract import CACHE_ALIGN
    from genrt.poems.model import PoemModel
    model = PoemModel.load(tiny_poems_dir, provider="cpu", threads=1)
    cache = model.start([[4, 10, 11]])
    for _ in range(CACHE_ALIGN):                          # fills the first block: the buffers widen by one block
        _, cache = model.step(np.ones((1, 1), np.int64), cache)
    joined = model.join(cache, model.start([[4, 12], [4, 13, 14, 15]], copies=[2, 1]))
    assert joined.lengths.tolist() == [CACHE_ALIGN, 0, 0, 0]
    _, joined = model.step(np.full((4, 1), 9, np.int64), joined)
    assert joined.filled.sum(axis=1).tolist() == [CACHE_ALIGN + 1, 1, 1, 1]
    assert joined.self_kv[0].shape[2] == 2 * CACHE_ALIGN
    assert not joined.self_kv[0][1:, :, 1:].any()            # a new row's unfilled slots hold zeros
    left = model.reorder(joined, np.array([3, 0]))
    assert left.lengths.tolist() == [1, CACHE_ALIGN + 1] and left.cross_kv[0].shape[0] == 2
    np.testing.assert_array_equal(left.src_mask[0], joined.src_mask[3])


def test_append_rows_reuses_spare_rows_and_keep_rows_compacts_in_place():
    from genrt.poems.model import append_rows, keep_rows
    a = np.arange(6.0).reshape(3, 2)
    grown = append_rows(a, np.full((1, 2), 9.0))
    np.testing.assert_array_equal(grown, [[0, 1], [2, 3], [4, 5], [9, 9]])
    assert len(grown.base) == 8                                     # room for as many more
    again = append_rows(grown, np.full((2, 2), 7.0))
    assert again.base is grown.base and len(again) == 6             # written into the spare rows, nothing copied
    np.testing.assert_array_equal(again[4:], 7.0)
    kept = keep_rows(again, np.array([1, 3, 5]))
    np.testing.assert_array_equal(kept, [[2, 3], [9, 9], [7, 7]])
    assert kept.base is grown.base
    third = append_rows(kept, np.zeros((1, 2)))
    assert third.base is grown.base and len(third) == 4


def test_keep_rows_copies_only_the_rows_that_change_place():
    from genrt.poems.model import keep_rows
    x = np.arange(12.0).reshape(6, 2)
    rows = np.array([0, 5, 2])                                      # row 5 moves into the gap left by row 1
    want = x[rows].copy()
    before = x[[0, 2]].copy()
    kept = keep_rows(x, rows)
    np.testing.assert_array_equal(kept, want)
    assert kept.base is x or kept.base is x.base
    np.testing.assert_array_equal(x[[0, 2]], before)                # untouched in place
    np.testing.assert_array_equal(keep_rows(np.arange(8.0).reshape(4, 2), np.array([3, 3, 0])),
                                  np.arange(8.0).reshape(4, 2)[[3, 3, 0]])   # repeats and backwards moves too
