"""The torch (device) paths of the kNN graph, k-reciprocal Jaccard, re-ranking, GCR and clustering.

On CPU the torch kernel is checked against the scipy path and the dense references (same sparsity,
values within 1e-5, same DBSCAN clusters). The CUDA tests run only where CUDA exists and check that
the GPU equals the CPU: same neighbours, ARI 1.0, distances within 1e-5.
"""
import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from reidkit.evaluation.knn_graph import KnnError, knn_device, knn_graph, knn_symmetric, resolve_device
from reidkit.evaluation.kreciprocal import (jaccard_distance, jaccard_distance_device, jaccard_torch,
                                            kreciprocal_encoding, kreciprocal_encoding_torch)
from reidkit.evaluation.rerank import kreciprocal_rerank, kreciprocal_rerank_torch, query_expansion
from reidkit.evaluation.rerank_gcr import gcr, propagate_lists, propagate_torch, propagation
from reidkit.methods.pseudo_labels import ClusterConfig, cluster, dbscan_labels

from kreciprocal_reference import blobs, dense_jaccard

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="CUDA not available")


def _same_csr(a, b, atol=1e-5):
    a, b = a.tocsr(), b.tocsr()
    a.sort_indices(), b.sort_indices()
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.data, b.data, atol=atol)


@pytest.mark.parametrize("convention,k1,k2", [("cluster", 30, 6), ("rerank", 20, 6), ("cluster", 5, 1),
                                              ("rerank", 7, 3)])
def test_torch_kernel_equals_scipy_path_and_dense_reference(convention, k1, k2):
    x, _ = blobs(n_ids=12, per_id=14, dim=24, spread=0.9, seed=k1 + k2)
    length = k1 + 1 if convention == "rerank" else k1
    g = knn_graph(x, max(length, k2), precision="fp32", want_row_max=convention == "rerank")
    t = {k: None if v is None else torch.from_numpy(v) for k, v in
         (("gi", g.indices), ("gd", g.sqdist), ("rmax", g.row_max))}
    v_t = kreciprocal_encoding_torch(torch.from_numpy(x), t["gi"], t["gd"], k1, k2, convention=convention,
                                     row_max=t["rmax"])
    _same_csr(v_t.to_scipy(), kreciprocal_encoding(x, k1, k2, convention=convention, graph=g), 1e-6)
    v_ref, j_ref = dense_jaccard(x, k1, k2, convention)
    np.testing.assert_allclose(v_t.to_scipy().toarray(), v_ref, atol=2e-6)
    j_t = jaccard_torch(v_t, max_pairs=4000)  # small blocks: the block loop is exercised
    _same_csr(j_t.to_scipy(), jaccard_distance(x, k1, k2, convention=convention, precision="fp32"))
    dense = np.ones(j_ref.shape)
    coo = j_t.to_scipy().tocoo()
    dense[coo.row, coo.col] = coo.data
    np.testing.assert_allclose(dense, j_ref, atol=1e-5)
    rows = np.array([3, 0, 17])
    _same_csr(jaccard_distance_device(x, k1, k2, convention=convention, device="cpu", rows=rows),
              jaccard_distance(x, k1, k2, convention=convention, precision="fp32", rows=rows))


def test_knn_device_equals_cpu_graph():
    x, _ = blobs(n_ids=30, per_id=20, dim=48, spread=1.0, seed=3)
    g = knn_graph(x, 12, precision="bf16", want_row_max=True)
    i, d, m = knn_device(torch.from_numpy(x), 12, want_max=True, block=64)
    np.testing.assert_array_equal(i.numpy(), g.indices)
    np.testing.assert_allclose(d.numpy(), g.sqdist, atol=1e-5)
    np.testing.assert_allclose(m.numpy(), g.row_max, atol=1e-5)
    si, sd, sm = knn_symmetric(torch.from_numpy(x), 12, want_max=True, block=70)  # many blocks, ragged end
    np.testing.assert_array_equal(si.numpy(), g.indices)
    np.testing.assert_allclose(sd.numpy(), g.sqdist, atol=1e-5)
    np.testing.assert_allclose(sm.numpy(), g.row_max, atol=1e-5)


def test_rerank_torch_path_equals_cpu_path_and_fastreid():
    x, _ = blobs(n_ids=25, per_id=12, dim=16, spread=1.0, seed=11)
    q, g = x[:60], x[60:]
    cpu = kreciprocal_rerank(q, g, device="cpu")
    dev = kreciprocal_rerank_torch(q, g, 20, 6, 0.3, torch.device("cpu"), chunk=7, max_pairs=5000)
    np.testing.assert_allclose(dev, cpu, atol=1e-5)  # fast-reid's classic: tests/evaluation/test_rerank.py


@pytest.mark.parametrize("sym", [False, True])
def test_gcr_propagation_torch_equals_scipy(sym):
    rng = np.random.default_rng(int(sym))
    n, k = 80, 6
    idx = torch.from_numpy(np.stack([np.r_[i, rng.choice(np.delete(np.arange(n), i), k - 1, replace=False)]
                                     for i in range(n)]))
    aff = torch.from_numpy(rng.uniform(-0.5, 1.0, (n, k)).astype(np.float32))
    aff[:, 0], aff[5, 3] = 1.0, -3.0  # an excluded entry gets no weight
    x = torch.from_numpy(rng.normal(size=(n, 10)).astype(np.float32))
    ref = propagation(idx, aff, 0.2, sym) @ x.numpy()
    np.testing.assert_allclose(propagate_torch(idx, aff, 0.2, sym, x).numpy(), ref, atol=1e-5)
    if not sym:  # the gather path of mode 'nonsym', with a repeated column (a starved cross-camera row)
        idx[7, 4] = idx[7, 2]
        two = 0.7 * (propagation(idx, aff, 0.2, False) @ x.numpy()) + 0.3 * (propagation(idx[:, :3], aff[:, :3], 0.5, False) @ x.numpy())
        got = propagate_lists(x, [(idx, aff, 0.2, 0.7), (idx[:, :3], aff[:, :3], 0.5, 0.3)])
        np.testing.assert_allclose(got.numpy(), two, atol=1e-6)


def test_device_switch_errors():
    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    with pytest.raises(KnnError, match="unknown device"):
        resolve_device("gpu0")
    if not CUDA:
        with pytest.raises(KnnError, match="CUDA is not available"):
            kreciprocal_rerank(np.ones((3, 4), np.float32), np.ones((5, 4), np.float32), device="cuda")


# ------------------------------------------------------------------------------------------------
# CUDA equals CPU (run only where CUDA exists)


@needs_cuda
def test_cuda_knn_and_jaccard_equal_cpu():
    x, lab = blobs(n_ids=40, per_id=25, dim=64, spread=0.9, seed=2)
    g_cpu, g_gpu = knn_graph(x, 31, precision="fp32"), knn_graph(x, 31, device="cuda")
    np.testing.assert_array_equal(g_gpu.indices, g_cpu.indices)
    np.testing.assert_allclose(g_gpu.sqdist, g_cpu.sqdist, atol=1e-5)
    for conv, k1 in (("cluster", 30), ("rerank", 20)):
        _same_csr(jaccard_distance_device(x, k1, 6, convention=conv, device="cuda"),
                  jaccard_distance(x, k1, 6, convention=conv, precision="fp32"))
    cfg = ClusterConfig(eps=0.6, min_samples=4)
    a, b = cluster(x, cfg, device="cpu"), cluster(x, cfg, device="cuda")
    assert adjusted_rand_score(a, b) == 1.0 and (a == b).all()


@needs_cuda
def test_cuda_rerank_gcr_qe_equal_cpu():
    x, _ = blobs(n_ids=40, per_id=25, dim=64, spread=0.9, seed=4)
    q, g = x[:200], x[200:]
    np.testing.assert_allclose(kreciprocal_rerank(q, g, device="cuda"), kreciprocal_rerank(q, g, device="cpu"),
                               atol=1e-5)
    cams = np.arange(len(x)) % 6
    for mode in ("nonsym", "sym", "localk"):
        a = gcr(q, g, cams[:200], cams[200:], mode=mode, precision="fp32", device="cpu")
        b = gcr(q, g, cams[:200], cams[200:], mode=mode, device="cuda")
        for u, v in zip(a, b):
            np.testing.assert_allclose(v, u, atol=1e-5)
    for u, v in zip(query_expansion(q, g, device="cpu"), query_expansion(q, g, device="cuda")):
        np.testing.assert_allclose(v, u, atol=1e-5)


@needs_cuda
def test_cuda_dbscan_on_gpu_graph_is_cpu_clustering():
    x, _ = blobs(n_ids=60, per_id=20, dim=32, spread=1.0, seed=9)
    d_cpu = jaccard_distance(x, 30, 6, precision="fp32")
    d_gpu = jaccard_distance_device(x, 30, 6, device="cuda")
    assert adjusted_rand_score(dbscan_labels(d_cpu, 0.6, 4), dbscan_labels(d_gpu, 0.6, 4)) == 1.0
