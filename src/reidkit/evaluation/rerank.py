"""Re-ranking: k-reciprocal (Zhong et al., CVPR 2017) and query expansion (average / alpha-QE).

k-reciprocal re-ranking replaces the query-gallery distance by
``d* = (1 - lambda) * d_J + lambda * d / max``, with ``d`` the squared Euclidean distance, ``max`` the
largest squared distance of the query to any of the N = N_q + N_g samples, and ``d_J`` the Jaccard
distance of k-reciprocal encodings (``reidkit.evaluation.kreciprocal``, the shared sparse kernel:
kNN graph, k-reciprocal sets with the 2/3 expansion rule, Gaussian weights, local query expansion over
k2 neighbours, Jaccard only over pairs that share a non-zero). Query and gallery are stacked, as in the
classic code. Nothing N x N is ever built: the kNN graph and encodings are O(N k), and the output
(N_q, N_g) is filled chunk by chunk. Defaults k1=20, k2=6, lambda=0.3 (the paper's Market setting).

Query expansion refines features instead (so search stays a plain Euclidean/cosine search):
x_i <- normalise(sum_{j in kNN(i)} w_ij x_j) with w_ij = max(cos_ij, 0)^alpha over the k nearest
*gallery* neighbours plus the sample itself (alpha = 0: average QE, Chum et al. 2007; alpha > 0:
alpha-QE, Radenovic et al. 2018). Gallery vectors are expanded the same way (database-side
augmentation) unless ``expand='query'``. Queries never see other queries.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from reidkit.evaluation.distances import normalize
from reidkit.evaluation.kreciprocal import (jaccard_blocks_torch, jaccard_from_encoding, kreciprocal_encoding,
                                           kreciprocal_encoding_torch)
from reidkit.evaluation.knn_graph import (check_features, exact_fp32, knn_device, knn_graph, knn_symmetric, pair_dots,
                                          resolve_device)
from reidkit.evaluation.threads import one_blas_thread


class RerankError(ValueError):
    """Bad re-ranking input or parameters."""


def kreciprocal_rerank(query: np.ndarray, gallery: np.ndarray, k1: int = 20, k2: int = 6,
                       lambda_value: float = 0.3, *, precision: str = "auto", chunk: int = 1024,
                       device: str = "auto") -> np.ndarray:
    """k-reciprocal re-ranked distances, (N_q, N_g) float32 (smaller = more similar).

    ``query`` (N_q, D) and ``gallery`` (N_g, D) float features; distances are Euclidean on them as given
    (L2-normalise first for cosine-trained models). Matches the classic dense ``re_ranking`` fed with
    Euclidean distance matrices, up to float rounding and neighbour ties. ``device``: ``"cpu"``,
    ``"cuda"`` or ``"auto"`` (cuda when available); both paths give the same result (within 1e-5).
    """
    q, g = check_features(query), check_features(gallery)
    if q.shape[1] != g.shape[1]:
        raise RerankError(f"feature dims differ: query {q.shape[1]}, gallery {g.shape[1]}")
    if not 0.0 <= lambda_value <= 1.0:
        raise RerankError(f"lambda must lie in [0, 1], got {lambda_value}")
    if k1 < 1 or k2 < 1:
        raise RerankError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    dev = resolve_device(device)
    if dev.type != "cpu":
        return kreciprocal_rerank_torch(q, g, k1, k2, lambda_value, dev)
    n_q = len(q)
    x = np.concatenate([q, g])
    n = len(x)
    graph = knn_graph(x, min(n, max(k1 + 1, k2)), precision=precision, want_row_max=True)
    # The dense part of the output (a GEMM, multi-threaded, GIL released) runs in a worker thread while
    # this thread builds the sparse Jaccard part (mostly single-threaded numpy/scipy): both cores work.
    with ThreadPoolExecutor(1) as pool:
        dense = pool.submit(_scaled_distance, q, g, graph.row_max[:n_q], lambda_value, chunk)
        v = kreciprocal_encoding(x, k1, k2, convention="rerank", graph=graph)
        jac = jaccard_from_encoding(v, rows=np.arange(n_q))  # (N_q, N) CSR; absent pairs mean d_J = 1
        out = dense.result()
    rows = np.repeat(np.arange(n_q), np.diff(jac.indptr))
    cols = jac.indices.astype(np.int64) - n_q
    keep = cols >= 0  # query-query pairs do not enter the output
    out[rows[keep], cols[keep]] += (1.0 - lambda_value) * (jac.data[keep] - 1.0)
    return out


def kreciprocal_rerank_torch(q: np.ndarray, g: np.ndarray, k1: int, k2: int, lambda_value: float,
                             device: torch.device, chunk: int = 4096, max_pairs: int = 1 << 24) -> np.ndarray:
    """The device path of :func:`kreciprocal_rerank`: every stage in torch on ``device`` (any, CPU
    included, which is how it is tested), O(N k) device memory plus one (chunk, N_g) output block."""
    n_q, n = len(q), len(q) + len(g)
    with torch.no_grad():
        x = torch.from_numpy(np.concatenate([q, g])).to(device)
        gi, gd, rmax = knn_device(x, min(n, max(k1 + 1, k2)), want_max=True)
        v = kreciprocal_encoding_torch(x, gi, gd, k1, k2, convention="rerank", row_max=rmax)
        lhs, rhs = _scaled_operands(x[:n_q], x[n_q:], rmax[:n_q], lambda_value)
        out = np.empty((n_q, n - n_q), dtype=np.float32)
        rows = torch.arange(n_q, device=device)
        with exact_fp32():
            for lo, hi, r, c, dj in jaccard_blocks_torch(v, rows, max_pairs, max_rows=chunk):
                blk = (lhs[lo:hi] @ rhs.T).clamp_(min=1.0 - lambda_value)
                keep = c >= n_q  # query-query pairs do not enter the output
                blk.index_put_((r[keep], c[keep] - n_q), (1.0 - lambda_value) * (dj[keep] - 1.0), accumulate=True)
                out[lo:hi] = blk.cpu().numpy()
    return out


def _scaled_operands(q: torch.Tensor, g: torch.Tensor, row_max: torch.Tensor, lambda_value: float):
    """lambda * d_ij / max_i + (1 - lambda), d the squared Euclidean distance, as one product lhs @ rhs.T:
    with c_i = lambda / max_i, [-2 c_i q_i, c_i, c_i |q_i|^2 + 1 - lambda] . [g_j, |g_j|^2, 1]."""
    c = lambda_value / row_max.double().clamp(min=1e-12)
    qsq = (q.double() * q.double()).sum(1)
    lhs = torch.cat([q.double() * (-2.0 * c)[:, None], c[:, None], (c * qsq + 1.0 - lambda_value)[:, None]], 1)
    rhs = torch.cat([g, (g * g).sum(1, keepdim=True), torch.ones(len(g), 1, device=g.device)], 1)
    return lhs.float(), rhs.contiguous()


def _scaled_distance(q: np.ndarray, g: np.ndarray, row_max: np.ndarray, lambda_value: float,
                     chunk: int, workers: int | None = None) -> np.ndarray:
    """(N_q, N_g) float32 of :func:`_scaled_operands`, filled chunk by chunk.

    The products are numpy's (OpenBLAS): on a (chunk, N_g) output ~80 GFLOP per CPU-second on the
    2-core AVX2 EPYC against ~55-60 for torch.mm (MKL), which slows down on such wide products. Row
    chunks are shared by ``workers`` threads (default: torch's thread count) that each run BLAS on
    one thread, so no thread waits on another's fork-join."""
    lhs_t, rhs_t = _scaled_operands(torch.from_numpy(q), torch.from_numpy(g), torch.from_numpy(row_max),
                                    lambda_value)
    lhs, rhs = lhs_t.numpy(), rhs_t.numpy()
    out = np.empty((len(q), len(g)), dtype=np.float32)
    floor = np.float32(1.0 - lambda_value)  # d >= 0; the expanded form may round just below

    def fill(s: int) -> None:
        blk = out[s:s + chunk]
        np.matmul(lhs[s:s + chunk], rhs.T, out=blk)
        np.maximum(blk, floor, out=blk)

    starts = range(0, len(q), chunk)
    workers = max(1, min(workers or torch.get_num_threads(), len(starts)))
    with one_blas_thread():
        if workers == 1:
            for s in starts:
                fill(s)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(fill, starts))
    return out


def _topk_similar(a: torch.Tensor, b: torch.Tensor | None, k: int,
                  block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N_a, k) cosine similarities and indices of the k most similar rows of ``b`` (both normalised;
    ``b=None``: of ``a`` itself, self included).

    On the CPU, ``b=None`` is the symmetric search (:func:`knn_symmetric`: each pair's product once,
    the self-similar half of the work) and the other case numpy's BLAS into one reused (block, N_b)
    buffer; the similarities of the chosen pairs are exact fp32 dot products either way."""
    on_cpu = a.device.type == "cpu"
    if on_cpu and b is None:
        idx = knn_symmetric(a, k)[0]  # nearest in distance = most similar for unit vectors
        return pair_dots(a, idx), idx
    b = a if b is None else b
    block = block or (2048 if on_cpu else 8192)  # (block, N_b) scores: 0.7 GB at MSMT on CPU
    buf = np.empty((min(block, len(a)), len(b)), np.float32) if on_cpu else None
    sims, idx = [], []
    for s in range(0, len(a), block):
        if on_cpu:
            scores = torch.from_numpy(np.matmul(a[s:s + block].numpy(), b.numpy().T, out=buf[:min(block, len(a) - s)]))
        else:
            scores = a[s:s + block] @ b.T
        v, i = torch.topk(scores, k, dim=1)
        sims.append(v)
        idx.append(i)
    return torch.cat(sims), torch.cat(idx)


def _expand(x: torch.Tensor, base: torch.Tensor, k: int, alpha: float, self_in_base: bool) -> torch.Tensor:
    """New rows of ``x``: weighted sums over the sample itself and its k nearest rows of ``base``
    (``self_in_base``: ``x`` is ``base``, and each row is its own top hit, similarity 1, weight 1
    either way). The sums are one weighted gather per row (``embedding_bag``)."""
    k_eff = min(len(base), k + 1 if self_in_base else k)
    sims, idx = _topk_similar(x, None if self_in_base else base, k_eff)
    w = sims.clamp_min(0.0) ** alpha if alpha > 0 else torch.ones_like(sims)
    agg = torch.nn.functional.embedding_bag(idx, base, per_sample_weights=w, mode="sum")
    return normalize(agg if self_in_base else x + agg)


def query_expansion(query: np.ndarray, gallery: np.ndarray, k: int = 5, alpha: float = 3.0, times: int = 1,
                    expand: str = "both", device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Average QE (``alpha=0``) or alpha-QE; returns L2-normalised ``(query', gallery')`` float32.

    Each round, every query becomes the weighted sum of itself and its ``k`` nearest gallery vectors;
    with ``expand='both'`` every gallery vector becomes that of itself and its ``k`` nearest other
    gallery vectors, computed from the same round's gallery (so gallery and queries stay consistent).
    ``device``: ``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when available), the same code on either.
    """
    if expand not in ("both", "query"):
        raise RerankError(f"expand must be 'both' or 'query', got {expand!r}")
    if k < 1 or times < 1 or alpha < 0:
        raise RerankError(f"need k >= 1, times >= 1, alpha >= 0; got k={k}, times={times}, alpha={alpha}")
    dev = resolve_device(device)
    q = normalize(torch.from_numpy(check_features(query)).to(dev))
    g = normalize(torch.from_numpy(check_features(gallery)).to(dev))
    if q.shape[1] != g.shape[1]:
        raise RerankError(f"feature dims differ: query {q.shape[1]}, gallery {g.shape[1]}")
    with torch.no_grad(), exact_fp32():
        for _ in range(times):
            new_q = _expand(q, g, k, alpha, self_in_base=False)
            if expand == "both":
                g = _expand(g, g, k, alpha, self_in_base=True)
            q = new_q
    return q.cpu().numpy(), g.cpu().numpy()


RERANK_METHODS = ("none", "kreciprocal", "gcr", "qe")


def apply_rerank(method: str, query, gallery, *, metric: str = "cosine", **params):
    """Re-rank two ``FeatureSet``s: returns ``(distmat or None, query', gallery')``.

    ``kreciprocal`` returns a (N_q, N_g) distance matrix (features L2-normalised first when
    ``metric='cosine'``); ``gcr`` and ``qe`` return refined feature sets to evaluate with ``metric``;
    ``none`` returns the inputs. ``params`` are the method's keyword arguments
    (``k1, k2, lambda_value`` / ``reidkit.evaluation.rerank_gcr.GCRConfig`` fields / ``k, alpha, times``)
    and ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``) for every method.
    """
    from dataclasses import replace

    if method not in RERANK_METHODS:
        raise RerankError(f"unknown re-ranking {method!r}; expected one of {', '.join(RERANK_METHODS)}")
    if method == "none":
        return None, query, gallery
    if method == "kreciprocal":
        q, g = query.features, gallery.features
        if metric == "cosine":
            q, g = normalize(torch.from_numpy(q)).numpy(), normalize(torch.from_numpy(g)).numpy()
        return kreciprocal_rerank(q, g, **params), query, gallery
    if method == "qe":
        q, g = query_expansion(query.features, gallery.features, **params)
    else:
        from reidkit.evaluation.rerank_gcr import gcr

        q, g = gcr(query.features, gallery.features, query.camids, gallery.camids, **params)
    return None, replace(query, features=q), replace(gallery, features=g)
