import numpy as np
import pytest
import torch

from reidkit.evaluation import knn_graph as G

from kreciprocal_reference import blobs


def _dense(x):
    x = x.astype(np.float64)
    return ((x[:, None] - x[None]) ** 2).sum(-1)


@pytest.mark.parametrize("margin", [24, 2])
def test_bf16_shortlist_is_exact(margin):
    # margin=2 makes many rows fail the certificate, exercising the fp32 fallback
    x, _ = blobs(n_ids=30, per_id=20, dim=48, spread=1.0, seed=1)
    x = x * np.linspace(0.5, 4.0, len(x), dtype=np.float32)[:, None]  # varied norms
    d = _dense(x)
    np.fill_diagonal(d, -1)
    ref = np.argsort(d, axis=1, kind="stable")[:, :20]
    g, n_failed = G._knn_torch(x, 20, 128, True, True, margin)
    if margin == 2:
        assert n_failed > 0
    assert (g.indices[:, 0] == np.arange(len(x))).all()
    # same neighbour sets (order may differ only between numerically tied distances)
    same = np.mean([set(a) == set(b) for a, b in zip(g.indices, ref)])
    assert same == 1.0
    dd = _dense(x)
    np.testing.assert_allclose(g.sqdist, np.take_along_axis(dd, g.indices, 1), rtol=1e-4, atol=1e-4)
    assert (np.diff(g.sqdist, axis=1) >= 0).all()
    np.testing.assert_allclose(g.row_max, dd.max(1), rtol=1e-5)


def test_public_knn_graph_methods_agree():
    x, _ = blobs(n_ids=10, per_id=30, dim=16, spread=1.0, seed=2)
    graphs = [G.knn_graph(x, 12, method=m, precision=p) for m, p in
              [("torch", "fp32"), ("torch", "bf16"), ("faiss", "auto")]]
    for g in graphs[1:]:
        assert np.mean([set(a) == set(b) for a, b in zip(g.indices, graphs[0].indices)]) == 1.0
    with pytest.raises(G.KnnError, match="k=0"):
        G.knn_graph(x, 0)


@pytest.mark.parametrize("block,workers", [(37, 1), (37, 2), (64, 3), (1000, 2)])
def test_symmetric_blocked_search_equals_brute_force(block, workers):
    # exact duplicates (ties at distance 0 and between them), points on a line in sorted order (later
    # blocks keep beating the lists' k-th distance, so many entries survive the filter) and blobs
    x, _ = blobs(n_ids=12, per_id=15, dim=8, spread=1.0, seed=4)
    line = np.zeros((120, 8), np.float32)
    line[:, 0] = np.geomspace(4.0, 0.01, 120)
    x = np.concatenate([x, x[:25], line]).astype(np.float32) * 3.0
    k = 9
    i, d, m = G.knn_symmetric(torch.from_numpy(x), k, want_max=True, block=block, workers=workers)
    i, d, m = i.numpy(), d.numpy(), m.numpy()
    dd = _dense(x)
    assert (i[:, 0] == np.arange(len(x))).all() and (d[:, 0] == 0).all()  # self first, even with duplicates
    ref = np.sort(np.where(np.eye(len(x), dtype=bool), -1.0, dd), axis=1)[:, :k + 1]
    ref[:, 0] = 0.0
    gap = np.diff(ref, axis=1).min(1) > 1e-3  # rows without (near-)ties up to the (k+1)-th
    ref = ref[:, :k]
    np.testing.assert_allclose(d, ref, atol=2e-4)  # the k smallest distances, ascending
    np.testing.assert_allclose(d, np.take_along_axis(dd, i, 1), atol=2e-4)  # each index has its distance
    assert all(len(set(r)) == k for r in i)  # no neighbour twice
    np.testing.assert_allclose(m, dd.max(1), rtol=1e-5)
    # away from ties, the very same neighbours as the plain blocked search
    j, _, _ = G.knn_device(torch.from_numpy(x), k, block=50)
    assert gap.sum() > 60
    np.testing.assert_array_equal(i[gap], j.numpy()[gap])


@pytest.mark.parametrize("block,workers", [(33, 1), (33, 3), (500, 2)])
def test_symmetric_search_cross_group_lists(block, workers):
    # the k nearest of another group, from the same pass; group 0 holds all but 3 samples, so its rows
    # have 3 candidates for k_cross = 4 (index -1, distance inf for the 4th)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 12)).astype(np.float32)
    grp = np.zeros(200, dtype=np.int64)
    grp[[3, 50, 199]] = 1
    i, d, _, ci, cd = G.knn_symmetric(torch.from_numpy(x), 5, block=block, workers=workers,
                                      groups=torch.from_numpy(grp), k_cross=4)
    dd = _dense(x)
    for r in range(len(x)):
        other = np.flatnonzero(grp != grp[r])
        best = other[np.argsort(dd[r, other], kind="stable")][:4]
        got = ci[r].numpy()
        assert set(got[got >= 0]) == set(best)
        assert (got < 0).sum() == 4 - len(best) and np.isinf(cd[r].numpy()[got < 0]).all()
        np.testing.assert_allclose(cd[r].numpy()[got >= 0], dd[r, got[got >= 0]], atol=1e-4)
    ref = np.argsort(np.where(np.eye(len(x), dtype=bool), -1.0, dd), axis=1, kind="stable")[:, :5]
    assert all(set(a) == set(b) for a, b in zip(i.numpy(), ref))
