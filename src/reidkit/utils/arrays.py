"""NumPy helpers shared by evaluation, retrieval and clustering (torch-free).

``l2_normalise`` is THE L2 normalisation of feature rows in NumPy; its torch counterpart, which also
copes with magnitudes that overflow float32, is ``reidkit.evaluation.distances.normalize``.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-12  # a norm below this divides as if it were EPS: a zero row stays zero


def l2_normalise(x: np.ndarray, *, inplace: bool = False, unit_tol: float | None = None) -> np.ndarray:
    """Rows of the (N, D) array ``x`` scaled to unit L2 norm, in ``x``'s dtype; zero rows stay zero.

    ``inplace``: divide ``x`` itself and return it (no copy). ``unit_tol``: when every row's norm is
    already within ``unit_tol`` of 1, return ``x`` untouched (no copy of a large gallery)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if unit_tol is not None and len(x) and np.abs(norms - 1).max() < unit_tol:
        return x
    norms = np.maximum(norms, EPS)
    if inplace:
        x /= norms
        return x
    return x / norms
