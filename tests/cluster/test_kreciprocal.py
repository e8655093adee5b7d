import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score

from reidkit.evaluation.kreciprocal import (KReciprocalError, jaccard_distance, knn_graph,
                                            kreciprocal_encoding, row_max_sq_distance)

from kreciprocal_reference import blobs, dense_jaccard


def _dense(m: sp.csr_matrix) -> np.ndarray:
    """Absent entries mean distance 1."""
    out = np.ones(m.shape)
    coo = m.tocoo()
    out[coo.row, coo.col] = coo.data
    return out


@pytest.mark.parametrize("convention,k1,k2", [
    ("cluster", 30, 6), ("rerank", 20, 6), ("cluster", 5, 1), ("rerank", 7, 3), ("cluster", 12, 12),
])
def test_matches_dense_reference(convention, k1, k2):
    x, _ = blobs(n_ids=12, per_id=14, dim=24, spread=0.9, seed=k1 + k2)
    v_ref, j_ref = dense_jaccard(x, k1, k2, convention)
    v = kreciprocal_encoding(x, k1, k2, convention=convention)
    np.testing.assert_allclose(v.toarray(), v_ref, atol=2e-6)
    j = jaccard_distance(x, k1, k2, convention=convention)
    assert j.shape == (len(x), len(x)) and j.dtype == np.float32
    np.testing.assert_allclose(_dense(j), j_ref, atol=2e-5)
    # candidate pairs are exactly the pairs whose encodings share support
    shared = (v_ref > 0).astype(int) @ (v_ref > 0).T.astype(int) > 0
    stored = np.zeros_like(shared)
    coo = j.tocoo()
    stored[coo.row, coo.col] = True
    assert (stored == shared).all()
    assert np.allclose(j.diagonal(), 0.0, atol=1e-6)


def test_rows_subset_and_faiss_agree():
    x, _ = blobs(n_ids=10, per_id=12, dim=16, spread=0.8, seed=3)
    full = jaccard_distance(x, 20, 6, convention="rerank")
    rows = np.arange(40, 70)
    part = jaccard_distance(x, 20, 6, convention="rerank", rows=rows, max_pairs=500)
    np.testing.assert_allclose(_dense(part), _dense(full)[rows], atol=1e-6)
    via_faiss = jaccard_distance(x, 20, 6, convention="rerank", knn="faiss")
    np.testing.assert_allclose(_dense(via_faiss), _dense(full), atol=1e-5)
    via_bf16 = jaccard_distance(x, 20, 6, convention="rerank", precision="bf16")
    np.testing.assert_allclose(_dense(via_bf16), _dense(full), atol=1e-5)


def test_knn_graph_self_first_and_exact():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    x[5] = x[6]  # an exact duplicate: self must still come first
    d = ((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1)
    for method in ("torch", "faiss"):
        g = knn_graph(x, 10, method=method, block=64, want_row_max=True)
        assert (g.indices[:, 0] == np.arange(300)).all()
        assert g.indices[5, 1] == 6 and g.indices[6, 1] == 5
        ref = np.sort(d, axis=1)[:, :10]
        np.testing.assert_allclose(np.sort(g.sqdist, axis=1), ref, atol=1e-4)
        np.testing.assert_allclose(g.row_max, d.max(1), rtol=1e-5)
    np.testing.assert_allclose(row_max_sq_distance(x, rows=[1, 2]), d.max(1)[[1, 2]], rtol=1e-5)


def test_dbscan_labels_agree_with_dense_reference():
    x, _ = blobs(n_ids=40, per_id=10, dim=32, spread=1.0, seed=7)
    _, j_ref = dense_jaccard(x, 30, 6, "cluster")
    j = jaccard_distance(x, 30, 6, convention="cluster")
    for eps in (0.5, 0.6, 0.7):
        ref = DBSCAN(eps=eps, min_samples=4, metric="precomputed").fit_predict(j_ref)
        ours = DBSCAN(eps=eps, min_samples=4, metric="precomputed").fit_predict(j)
        assert len(set(ref)) > 5
        assert adjusted_rand_score(ref, ours) >= 0.99


def test_bad_input_is_a_clear_error():
    with pytest.raises(KReciprocalError, match="NaN"):
        jaccard_distance(np.full((5, 3), np.nan))
    with pytest.raises(KReciprocalError, match="shape"):
        jaccard_distance(np.zeros(5))
    with pytest.raises(KReciprocalError, match="convention"):
        jaccard_distance(np.eye(5), convention="other")
    assert issubclass(KReciprocalError, ValueError)
