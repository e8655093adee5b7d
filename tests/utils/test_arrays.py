"""The one NumPy L2 normalisation, against a plain per-row loop."""
from __future__ import annotations

import math

import numpy as np

from reidkit.utils.arrays import l2_normalise


def _loop(x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    for i, row in enumerate(x.astype(np.float64)):
        n = math.sqrt(sum(v * v for v in row))
        out[i] = row / n if n > 0 else 0.0
    return out


def test_rows_unit_length_zero_row_stays_zero():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [-1e-3, 2e-3]], np.float32)
    y = l2_normalise(x)
    assert y.dtype == np.float32 and y is not x
    np.testing.assert_allclose(y, _loop(x), rtol=1e-6)
    np.testing.assert_array_equal(y[1], [0.0, 0.0])
    assert x[0, 0] == 3.0  # the input is untouched


def test_inplace_and_the_previous_expression_agree_bit_for_bit():
    x = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
    want = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # what extract / adapt wrote
    same = x.copy()
    assert l2_normalise(same, inplace=True) is same
    np.testing.assert_array_equal(same, want)
    np.testing.assert_array_equal(l2_normalise(x), want)


def test_unit_tol_returns_unit_rows_untouched():
    x = l2_normalise(np.random.default_rng(1).normal(size=(20, 5)).astype(np.float32))
    assert l2_normalise(x, unit_tol=1e-5) is x
    y = x * 2
    np.testing.assert_allclose(l2_normalise(y, unit_tol=1e-5), x, rtol=1e-6)
    empty = np.zeros((0, 5), np.float32)
    assert l2_normalise(empty, unit_tol=1e-5).shape == (0, 5)
