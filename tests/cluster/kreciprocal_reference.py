"""A plain dense k-reciprocal Jaccard reference, written loop by loop after Zhong et al. (CVPR 2017)
and the layout of the classic re-ranking / cluster-contrast code. Slow (O(N^2) memory); tests only."""
from __future__ import annotations

import numpy as np


def dense_jaccard(x: np.ndarray, k1: int, k2: int, convention: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (V after query expansion, Jaccard distance), both dense (N, N) float64."""
    x = x.astype(np.float64)
    n = len(x)
    dist = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    ranking = dist.copy()
    np.fill_diagonal(ranking, -1.0)  # self first
    initial_rank = np.argsort(ranking, axis=1, kind="stable")
    if convention == "cluster":
        # cluster-contrast: the kNN search returns k1 columns (self included), later sliced [:k1+1]
        initial_rank = initial_rank[:, :k1]
        weight_dist = dist
    else:
        weight_dist = dist / dist.max(axis=1, keepdims=True)

    def k_reciprocal(i: int, k: int) -> np.ndarray:
        forward = initial_rank[i, :k + 1]
        backward = initial_rank[forward, :k + 1]
        return forward[np.where(backward == i)[0]]

    V = np.zeros((n, n))
    half = int(np.around(k1 / 2.0))
    for i in range(n):
        r = k_reciprocal(i, k1)
        expansion = r
        for c in r:
            rc = k_reciprocal(c, half)
            if len(np.intersect1d(rc, r)) > 2.0 / 3.0 * len(rc):
                expansion = np.append(expansion, rc)
        expansion = np.unique(expansion)
        w = np.exp(-weight_dist[i, expansion])
        V[i, expansion] = w / w.sum()
    if k2 != 1:
        Vq = np.zeros_like(V)
        for i in range(n):
            Vq[i] = V[initial_rank[i, :k2]].mean(axis=0)
        V = Vq
    jac = np.zeros((n, n))
    for i in range(n):
        s = np.zeros(n)
        for j in range(n):
            s[j] = np.minimum(V[i], V[j]).sum()
        jac[i] = 1.0 - s / (2.0 - s)
    return V, np.maximum(jac, 0.0)


def blobs(n_ids: int, per_id: int, dim: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm clustered features (n_ids * per_id, dim) float32 and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(n_ids), per_id)
    x = centres[labels] + spread * rng.normal(size=(labels.size, dim)) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    perm = rng.permutation(labels.size)
    return x[perm].astype(np.float32), labels[perm]
