"""The decision path's array shortcuts give what the plain numpy spelling gives."""

from __future__ import annotations

import numpy as np
import pytest

from interlock.routing.learned.knn import _top_k
from interlock.routing.row_gather import take_rows


@pytest.mark.parametrize("width", [0, 1, 2, 3, 32])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_take_rows_is_fancy_indexing(width: int, dtype: type) -> None:
    rng = np.random.default_rng(width)
    matrix = rng.random((500, width)).astype(dtype)
    for index in (rng.integers(0, 500, 300), np.arange(0), np.array([499, 0, 499])):
        got = take_rows(matrix, index)
        assert got.dtype == matrix.dtype and got.shape == (len(index), width)
        assert np.array_equal(got, matrix[index])


def test_take_rows_of_a_non_contiguous_matrix() -> None:
    matrix = np.arange(60, dtype=np.float32).reshape(6, 10)[:, ::3]  # a strided view
    index = np.array([5, 1, 1, 0])
    assert np.array_equal(take_rows(matrix, index), matrix[index])


@pytest.mark.parametrize("k", [0, 1, 7, 100, 1000])
def test_top_k_is_the_k_largest(k: int) -> None:
    values = np.random.default_rng(k).standard_normal(1000).astype(np.float32)
    top = _top_k(values, k)
    assert len(top) == k and np.all(np.diff(top) > 0)  # k distinct indices, in order
    want = np.argpartition(values, len(values) - k)[len(values) - k:] if k else []
    assert set(top.tolist()) == set(np.asarray(want).tolist())


def test_top_k_cuts_ties_at_the_kth_value_to_exactly_k() -> None:
    values = np.array([0.9, 0.5, 0.5, 0.1, 0.5, 0.8, 0.5], dtype=np.float32)
    top = _top_k(values, 4)
    assert len(top) == 4 and {0, 5} <= set(top.tolist())
    assert np.all(values[top] >= 0.5) and np.all(np.diff(top) > 0)


def test_top_k_still_gives_k_indices_among_nans() -> None:
    values = np.array([0.3, np.nan, 0.9, np.nan, 0.1], dtype=np.float32)
    top = _top_k(values, 3)
    assert len(set(top.tolist())) == 3 and np.all(np.diff(top) > 0)
