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
