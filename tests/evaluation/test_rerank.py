"""k-reciprocal re-ranking and query expansion against dense references written here."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from reidkit.evaluation.featurefile import FeatureSet
from reidkit.evaluation.rerank import (RerankError, apply_rerank, kreciprocal_rerank, kreciprocal_rerank_torch,
                                       query_expansion)

FASTREID_RERANK = Path(__file__).resolve().parents[2] / ".cache/peers/fastreid_whl/fastreid/evaluation/rerank.py"


def clusters(seed, n=150, ids=12, dim=8, noise=0.9):
    rng = np.random.default_rng(seed)
    pid = rng.integers(0, ids, n)
    x = rng.normal(size=(ids, dim))[pid] + noise * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), pid


def dense_rerank(q, g, k1, k2, lam):
    """Zhong et al. 2017, straight from the paper's definitions, with dense arrays and loops."""
    x = np.concatenate([q, g]).astype(np.float64)
    n, nq = len(x), len(q)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    d = d / d.max(axis=1, keepdims=True)
    rank = np.argsort(d, axis=1, kind="stable")

    def recip(i, k):
        return [j for j in rank[i, :k + 1] if i in rank[j, :k + 1]]

    v = np.zeros((n, n))
    for i in range(n):
        r = recip(i, k1)
        members = set(r)
        for j in r:
            rj = recip(j, int(round(k1 / 2)))
            if len(set(rj) & set(r)) > 2 / 3 * len(rj):
                members |= set(rj)
        cols = sorted(members)
        w = np.exp(-d[i, cols])
        v[i, cols] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    out = np.empty((nq, n - nq))
    for i in range(nq):
        for j in range(nq, n):
            s = np.minimum(v[i], v[j]).sum()
            out[i, j - nq] = (1 - lam) * (1 - s / (2 - s)) + lam * d[i, j]
    return out


@pytest.mark.parametrize("k1,k2,lam", [(20, 6, 0.3), (7, 1, 0.5), (5, 3, 0.0)])
def test_kreciprocal_matches_dense_reference(k1, k2, lam):
    x, _ = clusters(k1)
    q, g = x[:30], x[30:]
    ours = kreciprocal_rerank(q, g, k1, k2, lam, precision="fp32")
    assert ours.shape == (30, 120) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, dense_rerank(q, g, k1, k2, lam), atol=2e-5)


@pytest.mark.skipif(not FASTREID_RERANK.is_file(), reason="fast-reid wheel not downloaded (bench/_peers.py fetches it)")
def test_kreciprocal_matches_fastreid_classic():
    spec = importlib.util.spec_from_file_location("fastreid_rerank", FASTREID_RERANK)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x, _ = clusters(1, n=300, ids=25, dim=16)
    q, g = x[:60], x[60:]

    def euclid(a, b):
        return np.sqrt(np.maximum(((a[:, None] - b[None]) ** 2).sum(-1), 0)).astype(np.float32)

    ref = mod.re_ranking(euclid(q, g), euclid(q, q), euclid(g, g), 20, 6, 0.3)
    np.testing.assert_allclose(kreciprocal_rerank(q, g, device="cpu"), ref, atol=1e-5)
    # the device (torch) path, run here on the CPU, equals the classic too
    dev = kreciprocal_rerank_torch(q, g, 20, 6, 0.3, torch.device("cpu"), chunk=16, max_pairs=20000)
    np.testing.assert_allclose(dev, ref, atol=1e-5)


def test_rerank_improves_and_errors():
    x, pid = clusters(4, n=240, noise=1.1)
    cams = np.arange(240) % 3
    q, g = FeatureSet(x[:40], pid[:40], cams[:40]), FeatureSet(x[40:], pid[40:], cams[40:])
    dist, _, _ = apply_rerank("kreciprocal", q, g, k1=10, k2=3)
    assert dist.shape == (40, 200)
    with pytest.raises(RerankError, match="unknown re-ranking"):
        apply_rerank("magic", q, g)
    with pytest.raises(RerankError, match="lambda"):
        kreciprocal_rerank(x[:5], x[5:], lambda_value=2.0)
    with pytest.raises(ValueError, match="dims differ"):
        kreciprocal_rerank(x[:5], x[5:, :4])


@pytest.mark.parametrize("alpha", [0.0, 3.0])
def test_query_expansion_matches_loops(alpha):
    x, _ = clusters(9, n=80)
    q, g, k = x[:20], x[20:], 4
    nq, ng = query_expansion(q, g, k=k, alpha=alpha)

    def expand(vec, base, skip=None):
        sims = base @ vec
        order = [j for j in np.argsort(-sims, kind="stable") if j != skip][:k]
        acc = vec.astype(np.float64).copy()
        for j in order:
            acc += (max(sims[j], 0.0) ** alpha if alpha > 0 else 1.0) * base[j]
        return acc / np.linalg.norm(acc)

    np.testing.assert_allclose(nq, np.stack([expand(v, g) for v in q]), atol=1e-5)
    np.testing.assert_allclose(ng, np.stack([expand(v, g, skip=i) for i, v in enumerate(g)]), atol=1e-5)
    nq_only, ng_same = query_expansion(q, g, k=k, alpha=alpha, expand="query")
    np.testing.assert_allclose(nq_only, nq, atol=1e-6)
    np.testing.assert_allclose(ng_same, g / np.linalg.norm(g, axis=1, keepdims=True), atol=1e-6)
