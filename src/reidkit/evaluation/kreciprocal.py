"""Sparse k-reciprocal encoding and Jaccard distance (Zhong et al., CVPR 2017) in O(N*k) memory.

Shared by k-reciprocal re-ranking (``reidkit.evaluation.rerank``) and by clustering-based USL/UDA
(``reidkit.methods.pseudo_labels``). The classic implementations hold several dense N x N arrays
(8.65 GB at N = 32,621); here every stage is a sparse graph with O(k) entries per row:

1. kNN graph: the K nearest neighbours of every sample, self first (faiss or a blocked torch top-k).
2. k-reciprocal sets R(i, k1) = {j in N(i, k1) : i in N(j, k1)}, expanded by every R(j, round(k1/2))
   with j in R(i, k1) that shares more than 2/3 of its members with R(i, k1).
3. Encoding V: on the expanded set, V_ij = softmax_j(-d_ij) with d the squared Euclidean distance.
4. Local query expansion: V_i <- mean of V_j over the k2 nearest neighbours j of i (self included).
5. Jaccard distance d_J(i, j) = 1 - s / (2 - s), s = sum_m min(V_im, V_jm), clipped at >= 0, computed
   only for candidate pairs (pairs whose V rows share a non-zero). Absent pairs have d_J = 1.

Two conventions exist in the wild and both are exposed through ``convention``:

* ``"rerank"`` (Zhong et al.'s re-ranking code, as in torchreid / fast-reid ``re_ranking``):
  N(i, k1) holds k1 + 1 entries (self + k1 neighbours); the weights use d / max_j d_ij (each row of the
  squared distance divided by its maximum over all N samples). Typical k1=20, k2=6, lambda=0.3.
* ``"cluster"`` (cluster-contrast / fast-reid / OpenUnReID ``compute_jaccard_distance``): the faiss search
  returns k1 entries *including* self and the code then slices ``[:k1+1]``, so N(i, k1) holds only k1
  entries (the off-by-one of TransReID-SSL spec section 10 item 7); weights use the raw d = 2 - 2 f_i.f_j.
  Typical k1=30, k2=6.

In both, the half-size sets use round(k1/2) + 1 entries (numpy's round-half-even, as the originals), and
the expansion test is ``|R(j, k1/2) & R(i, k1)| > 2/3 * |R(j, k1/2)|`` evaluated in float64 like
``np.intersect1d`` code. Self is forced to rank 0 of its own list (the classic code relies on it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from reidkit.evaluation.knn_graph import (KnnError, KnnGraph, KnnMethod, Precision, check_features,
                                         knn_graph, row_max_sq_distance)

__all__ = ["KReciprocalError", "KnnGraph", "knn_graph", "row_max_sq_distance", "kreciprocal_encoding",
           "jaccard_from_encoding", "jaccard_distance",
           "TorchCSR", "kreciprocal_encoding_torch", "jaccard_blocks_torch", "jaccard_torch", "jaccard_distance_device"]

Convention = Literal["rerank", "cluster"]


KReciprocalError = KnnError  # one ValueError subclass for bad input anywhere in the kernel


# --------------------------------------------------------------------------------------------------
# 2-4. k-reciprocal encoding V (sparse)
# --------------------------------------------------------------------------------------------------

def _neighbour_matrix(idx: np.ndarray, length: int) -> sp.csr_matrix:
    """Boolean (N, N) CSR: A[i, j] = 1 iff j is among the first ``length`` entries of i's list."""
    n = idx.shape[0]
    cols = idx[:, :length].ravel()
    rows = np.repeat(np.arange(n), length)
    a = sp.csr_matrix((np.ones(cols.size, dtype=np.float32), (rows, cols)), shape=(n, n))
    a.sum_duplicates()
    return a


def _reciprocal(a: sp.csr_matrix) -> sp.csr_matrix:
    """R[i, j] = 1 iff j in N(i) and i in N(j)."""
    r = a.multiply(a.T).tocsr()
    r.eliminate_zeros()
    r.sort_indices()
    return r


def _pair_sqdist(x: np.ndarray, graph: KnnGraph, rows: np.ndarray, cols: np.ndarray,
                 chunk: int = 1 << 15) -> np.ndarray:
    """|x_r - x_c|^2 for paired index arrays (sorted by (r, c)): read from the kNN graph when the pair
    is in it (most are), otherwise computed from the features in chunks."""
    n, k = graph.indices.shape
    order = np.argsort(graph.indices, axis=1)
    gkeys = (np.arange(n, dtype=np.int64)[:, None] * n + np.take_along_axis(graph.indices, order, 1)).ravel()
    gvals = np.take_along_axis(graph.sqdist, order, 1).ravel()
    keys = rows * n + cols
    pos = np.minimum(np.searchsorted(gkeys, keys), gkeys.size - 1)
    hit = gkeys[pos] == keys
    out = np.where(hit, gvals[pos], 0.0).astype(np.float32)
    miss = np.flatnonzero(~hit)
    sq = np.einsum("nd,nd->n", x, x)
    for s in range(0, miss.size, chunk):
        m = miss[s:s + chunk]
        r, c = rows[m], cols[m]
        dots = np.einsum("nd,nd->n", x.take(r, axis=0), x.take(c, axis=0))
        out[m] = np.maximum(sq[r] + sq[c] - 2.0 * dots, 0.0)
    return out


def _segment_softmax_neg(d: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """softmax(-d) within each CSR row (every row non-empty)."""
    starts = indptr[:-1]
    lengths = np.diff(indptr)
    shift = np.repeat(np.minimum.reduceat(d, starts), lengths)
    w = np.exp(-(d - shift))
    return w / np.repeat(np.add.reduceat(w, starts), lengths)


def kreciprocal_encoding(features, k1: int = 30, k2: int = 6, *, convention: Convention = "cluster",
                         knn: KnnMethod = "auto", precision: Precision = "auto",
                         graph: KnnGraph | None = None) -> sp.csr_matrix:
    """The k-reciprocal encoding after local query expansion: (N, N) float32 CSR, rows sum to 1.

    ``graph`` may pass a precomputed :func:`knn_graph` with at least max(list length, k2) columns.
    """
    x = check_features(features)
    n = x.shape[0]
    if convention not in ("rerank", "cluster"):
        raise KReciprocalError(f"unknown convention {convention!r}; use 'rerank' or 'cluster'")
    if k1 < 1 or k2 < 1:
        raise KReciprocalError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    length = min(n, k1 + 1 if convention == "rerank" else k1)
    half = min(length, int(np.around(k1 / 2.0)) + 1)
    k2 = min(k2, n)
    kneed = max(length, k2)
    if graph is None:
        graph = knn_graph(x, kneed, method=knn, precision=precision, want_row_max=convention == "rerank")
    if graph.indices.shape[1] < kneed:
        raise KReciprocalError(f"kNN graph has {graph.indices.shape[1]} columns, need {kneed}")

    r_full = _reciprocal(_neighbour_matrix(graph.indices, length))
    r_half = _reciprocal(_neighbour_matrix(graph.indices, half))

    # Expansion: candidate j in R(i) qualifies when |R_half(j) & R(i)| > 2/3 |R_half(j)|.
    # The overlap is >= 1 on every pair of R (j is in both R(i) and R_half(j)), so the product keeps
    # exactly R's sparsity pattern and its data lines up with R's (i, j) pairs.
    overlap = r_full.multiply(r_full @ r_half.T).tocsr()
    overlap.sort_indices()
    if overlap.nnz != r_full.nnz:
        raise AssertionError("k-reciprocal overlap lost entries: self missing from its own list?")
    ri = np.repeat(np.arange(n), np.diff(overlap.indptr))
    rj = overlap.indices.astype(np.int64)
    ov = overlap.data.astype(np.float64)
    half_size = np.diff(r_half.indptr)[rj].astype(np.float64)
    keep = ov > (2.0 / 3.0) * half_size
    sel = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (ri[keep], rj[keep])), shape=(n, n))
    expanded = (r_full + sel @ r_half).tocsr()
    expanded.sort_indices()

    # Gaussian-kernel weights on the expanded sets.
    er = np.repeat(np.arange(n), np.diff(expanded.indptr))
    ec = expanded.indices.astype(np.int64)
    d = _pair_sqdist(x, graph, er, ec).astype(np.float64)
    if convention == "rerank":
        rmax = graph.row_max if graph.row_max is not None else row_max_sq_distance(x)
        d = d / np.maximum(rmax[er].astype(np.float64), 1e-12)
    w = _segment_softmax_neg(d, expanded.indptr).astype(np.float32)
    v = sp.csr_matrix((w, expanded.indices, expanded.indptr), shape=(n, n))

    if k2 > 1:
        qrows = np.repeat(np.arange(n), k2)
        qcols = graph.indices[:, :k2].ravel()
        q = sp.csr_matrix((np.full(qrows.size, 1.0 / k2, dtype=np.float32), (qrows, qcols)), shape=(n, n))
        v = (q @ v).tocsr()
    v.sort_indices()
    return v


# --------------------------------------------------------------------------------------------------
# 5. Jaccard distance over candidate pairs
# --------------------------------------------------------------------------------------------------

def _ragged_arange(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for each (s, c), without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    offs = np.repeat(starts - (ends - counts), counts)
    return np.arange(total, dtype=np.int64) + offs


def jaccard_from_encoding(v: sp.csr_matrix, rows: np.ndarray | None = None,
                          max_pairs: int = 1 << 20) -> sp.csr_matrix:
    """d_J for the given rows (default all) against all N columns: (len(rows), N) float32 CSR.

    Only candidate pairs (shared non-zero in V) are stored; absent entries mean distance 1.
    sum_m min(V_im, V_jm) is accumulated by enumerating, for each non-zero (i, m), the column m's
    non-zeros (j, m): work proportional to the number of (i, j, m) triples, memory to ``max_pairs``.
    Blocks of ~1M triples keep each temporary near 8 MB, which the allocator recycles between blocks;
    4M-triple blocks were page-faulted afresh each time (0.2 s more at N = 19,281).
    """
    n = v.shape[0]
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    vc = v.tocsc()
    vc.sort_indices()
    col_ptr = vc.indptr.astype(np.int64)
    col_rows = vc.indices.astype(np.int64)
    col_vals = vc.data
    col_cnt = np.diff(col_ptr)
    indptr = v.indptr.astype(np.int64)

    out_indptr = [np.zeros(1, dtype=np.int64)]
    out_idx, out_val = [], []
    # per-row cost = sum over the row's non-zeros m of col_cnt[m]: blocks of rows under max_pairs
    nnz_row = np.diff(indptr)[rows]
    cost = np.zeros(rows.size, dtype=np.int64)
    if v.nnz:
        per_entry = col_cnt[v.indices]
        csum = np.concatenate([[0], np.cumsum(per_entry)])
        cost = csum[indptr[rows] + nnz_row] - csum[indptr[rows]]
    s = 0
    offset = 0
    while s < rows.size:
        c = np.cumsum(cost[s:])
        e = s + max(1, int(np.searchsorted(c, max_pairs, side="right")))
        blk = rows[s:e]
        b = blk.size
        lo, cnt = indptr[blk], nnz_row[s:e]
        ent = _ragged_arange(lo, cnt)  # positions of the block's non-zeros (i, m) in v
        ent_row = np.repeat(np.arange(b, dtype=np.int64), cnt)
        m = v.indices[ent].astype(np.int64)
        a_val = v.data[ent]
        k = col_cnt[m]
        pos = _ragged_arange(col_ptr[m], k)  # every (j, m) sharing column m
        i_loc = np.repeat(ent_row, k)
        mins = np.minimum(np.repeat(a_val, k), col_vals[pos])
        acc = sp.csr_matrix((mins, (i_loc, col_rows[pos])), shape=(b, n))  # sums duplicates
        acc.sum_duplicates()
        sm = acc.data.astype(np.float64)
        dj = np.maximum(1.0 - sm / (2.0 - sm), 0.0).astype(np.float32)
        out_idx.append(acc.indices.astype(np.int32))
        out_val.append(dj)
        out_indptr.append(acc.indptr[1:].astype(np.int64) + offset)
        offset += acc.nnz
        s = e
    data = np.concatenate(out_val) if out_val else np.zeros(0, np.float32)
    ind = np.concatenate(out_idx) if out_idx else np.zeros(0, np.int32)
    ptr = np.concatenate(out_indptr)
    return sp.csr_matrix((data, ind, ptr), shape=(rows.size, n))


def jaccard_distance(features, k1: int = 30, k2: int = 6, *, convention: Convention = "cluster",
                     knn: KnnMethod = "auto", precision: Precision = "auto", rows=None,
                     max_pairs: int = 1 << 20) -> sp.csr_matrix:
    """Sparse k-reciprocal Jaccard distance of ``features`` (N, D) float32.

    Returns a (len(rows), N) float32 ``scipy.sparse.csr_matrix`` (rows default to all N) holding d_J in
    [0, 1] for candidate pairs; absent pairs have distance 1. The diagonal is stored (d_J(i, i) = 0),
    so ``sklearn.cluster.DBSCAN(metric='precomputed')`` can take the result as it is.

    Clustering (cluster-contrast): ``jaccard_distance(f, 30, 6, convention='cluster')``.
    Re-ranking (Zhong et al.): stack query and gallery, ``jaccard_distance(f, 20, 6, convention='rerank',
    rows=range(nq))[:, nq:]``, then blend with the original distance divided by
    :func:`row_max_sq_distance`: ``final = (1 - lambda) d_J + lambda d / max``, absent d_J being 1.
    """
    v = kreciprocal_encoding(features, k1, k2, convention=convention, knn=knn, precision=precision)
    return jaccard_from_encoding(v, None if rows is None else np.asarray(rows), max_pairs=max_pairs)


# --------------------------------------------------------------------------------------------------
# The same kernel in device-agnostic torch (the CUDA path; tested on CPU against the scipy path above)
# --------------------------------------------------------------------------------------------------
#
# Every stage is blocked over rows and holds O(N * k) entries (k-reciprocal sets padded to the list
# length, expanded sets compacted to their members), never N x N. The arithmetic follows the scipy
# path step for step (same float64 expansion test, same softmax shift, same Jaccard formula), so the
# results agree to float rounding: identical sparsity, values within ~1e-6.


@dataclass
class TorchCSR:
    """A (rows, cols) sparse matrix as torch tensors on one device: row pointers, columns, values."""

    crow: torch.Tensor  # (rows + 1,) int64
    col: torch.Tensor   # (nnz,) int64, sorted within each row
    val: torch.Tensor   # (nnz,) float32
    shape: tuple[int, int]

    def to_scipy(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.val.cpu().numpy(), self.col.cpu().numpy().astype(np.int32),
                              self.crow.cpu().numpy()), shape=self.shape)


def _t_ragged_arange(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """torch twin of :func:`_ragged_arange`: concatenation of arange(s, s + c)."""
    total = int(counts.sum())
    if total == 0:
        return torch.zeros(0, dtype=torch.int64, device=starts.device)
    ends = torch.cumsum(counts, 0)
    offs = torch.repeat_interleave(starts - (ends - counts), counts, output_size=total)
    return torch.arange(total, device=starts.device) + offs


def _t_coo_sum(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape: tuple[int, int]):
    """Sorted (row, col) pairs with duplicate values summed: returns (rows, cols, sums)."""
    key = rows * shape[1] + cols
    uniq, inv = torch.unique(key, sorted=True, return_inverse=True)
    sums = torch.zeros(uniq.numel(), dtype=vals.dtype, device=vals.device).index_add_(0, inv, vals)
    return uniq // shape[1], uniq % shape[1], sums


def _t_csr(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, shape: tuple[int, int]) -> TorchCSR:
    counts = torch.bincount(rows, minlength=shape[0])
    crow = torch.zeros(shape[0] + 1, dtype=torch.int64, device=rows.device)
    crow[1:] = torch.cumsum(counts, 0)
    return TorchCSR(crow, cols, vals, shape)


def _t_reciprocal(nb: torch.Tensor, block: int) -> torch.Tensor:
    """(N, L) bool: entry (i, a) is kept iff i is among the L entries of nb[i, a]'s own list."""
    n = nb.shape[0]
    out = torch.empty(nb.shape, dtype=torch.bool, device=nb.device)
    for s in range(0, n, block):
        e = min(n, s + block)
        me = torch.arange(s, e, device=nb.device)[:, None, None]
        out[s:e] = (nb[nb[s:e]] == me).any(-1)
    return out


def _t_pair_sqdist(x: torch.Tensor, sq: torch.Tensor, gi: torch.Tensor, gd: torch.Tensor,
                   rows: torch.Tensor, cols: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """|x_r - x_c|^2: from the kNN graph (gi, gd) when the pair is in it, else from the features."""
    n, k = gi.shape
    order = torch.argsort(gi, dim=1)
    gkeys = (torch.arange(n, device=gi.device)[:, None] * n + torch.gather(gi, 1, order)).reshape(-1)
    gvals = torch.gather(gd, 1, order).reshape(-1)
    keys = rows * n + cols
    pos = torch.searchsorted(gkeys, keys).clamp_(max=gkeys.numel() - 1)
    hit = gkeys[pos] == keys
    out = torch.where(hit, gvals[pos], torch.zeros((), device=gd.device))
    miss = torch.nonzero(~hit).squeeze(1)
    for s in range(0, miss.numel(), chunk):
        m = miss[s:s + chunk]
        r, c = rows[m], cols[m]
        out[m] = (sq[r] + sq[c] - 2.0 * (x[r] * x[c]).sum(1)).clamp_(min=0.0)
    return out


def kreciprocal_encoding_torch(x: torch.Tensor, gi: torch.Tensor, gd: torch.Tensor, k1: int, k2: int, *,
                               convention: Convention = "cluster", row_max: torch.Tensor | None = None,
                               block: int = 2048) -> TorchCSR:
    """:func:`kreciprocal_encoding` on ``x.device``: ``x`` (N, D) fp32 features, ``gi``/``gd`` the kNN
    graph's indices and squared distances (N, K >= list length and k2, self first) on the same
    device, ``row_max`` (N,) for ``convention='rerank'``. Returns V as a :class:`TorchCSR`."""
    n = x.shape[0]
    dev = x.device
    length = min(n, k1 + 1 if convention == "rerank" else k1)
    half = min(length, int(np.around(k1 / 2.0)) + 1)
    k2 = min(k2, n)
    if gi.shape[1] < max(length, k2):
        raise KReciprocalError(f"kNN graph has {gi.shape[1]} columns, need {max(length, k2)}")
    nb, hb = gi[:, :length].contiguous(), gi[:, :half].contiguous()
    rmask, hmask = _t_reciprocal(nb, block), _t_reciprocal(hb, block)
    half_size = hmask.sum(1).double()
    sq = (x * x).sum(1)
    rows_out, cols_out = [], []
    for s in range(0, n, block):
        e = min(n, s + block)
        j = nb[s:e]                                   # (B, L) candidates j of R(i)
        r_i = torch.where(rmask[s:e], j, -1)          # R(i), padded with -1
        cand = hb[j]                                  # (B, L, H) R_half(j) before its mask
        cmask = hmask[j]
        member = (cand[..., None] == r_i[:, None, None, :]).any(-1) & cmask
        ov = member.sum(-1).double()                  # |R_half(j) & R(i)|
        keep = rmask[s:e] & (ov > (2.0 / 3.0) * half_size[j])
        ext = torch.where(keep[..., None] & cmask, cand, -1).reshape(e - s, -1)
        allc = torch.sort(torch.cat([r_i, ext], 1), dim=1).values
        valid = allc >= 0
        valid[:, 1:] &= allc[:, 1:] != allc[:, :-1]
        r, c = torch.nonzero(valid, as_tuple=True)
        rows_out.append(r + s)
        cols_out.append(allc[r, c])
    er, ec = torch.cat(rows_out), torch.cat(cols_out)  # sorted by (row, col)
    d = _t_pair_sqdist(x, sq, gi, gd, er, ec).double()
    if convention == "rerank":
        if row_max is None:
            raise KReciprocalError("convention='rerank' needs row_max")
        d = d / row_max.double().clamp(min=1e-12)[er]
    shift = torch.full((n,), float("inf"), dtype=torch.float64, device=dev).scatter_reduce_(0, er, d, "amin")
    w = torch.exp(-(d - shift[er]))
    w = (w / torch.zeros(n, dtype=torch.float64, device=dev).index_add_(0, er, w)[er]).float()
    v = _t_csr(er, ec, w, (n, n))
    if k2 > 1:
        v = _t_local_expansion(v, gi[:, :k2], block)
    return v


def _t_local_expansion(v: TorchCSR, nbrs: torch.Tensor, block: int) -> TorchCSR:
    """V_i <- mean of V_j over the k2 neighbours j of i (self included)."""
    n, k2 = nbrs.shape
    rows, cols, vals = [], [], []
    for s in range(0, n, block):
        e = min(n, s + block)
        j = nbrs[s:e].reshape(-1)
        cnt = v.crow[j + 1] - v.crow[j]
        pos = _t_ragged_arange(v.crow[j], cnt)
        r_loc = torch.repeat_interleave(torch.arange(s, e, device=j.device).repeat_interleave(k2), cnt,
                                        output_size=pos.numel())
        r, c, sm = _t_coo_sum(r_loc, v.col[pos], v.val[pos] * np.float32(1.0 / k2), v.shape)
        rows.append(r), cols.append(c), vals.append(sm)
    return _t_csr(torch.cat(rows), torch.cat(cols), torch.cat(vals), v.shape)


def jaccard_blocks_torch(v: TorchCSR, rows: torch.Tensor | None = None, max_pairs: int = 1 << 22,
                         max_rows: int = 4096):
    """Yield ``(lo, hi, r, c, d_J)`` for consecutive slices ``rows[lo:hi]``: the candidate pairs of those
    rows (r indexes into ``rows``; c the column) and their Jaccard distance, float32 on ``v``'s device.
    Blocks hold at most ~``max_pairs`` (i, j, m) triples and ``max_rows`` rows."""
    n = v.shape[0]
    dev = v.col.device
    rows = torch.arange(n, device=dev) if rows is None else rows.to(dev)
    order = torch.argsort(v.col, stable=True)               # CSC view: entries sorted by column
    col_rows = torch.repeat_interleave(torch.arange(n, device=dev), v.crow[1:] - v.crow[:-1],
                                       output_size=v.col.numel())[order]
    col_vals = v.val[order]
    col_cnt = torch.bincount(v.col, minlength=n)
    col_ptr = torch.zeros(n + 1, dtype=torch.int64, device=dev)
    col_ptr[1:] = torch.cumsum(col_cnt, 0)
    nnz_row = (v.crow[1:] - v.crow[:-1])[rows]
    per_entry = torch.cat([torch.zeros(1, dtype=torch.int64, device=dev), torch.cumsum(col_cnt[v.col], 0)])
    cost = (per_entry[v.crow[rows] + nnz_row] - per_entry[v.crow[rows]]).cpu().numpy()
    s = 0
    while s < rows.numel():
        c = np.cumsum(cost[s:s + max_rows])
        e = s + max(1, int(np.searchsorted(c, max_pairs, side="right")))
        blk = rows[s:e]
        cnt = nnz_row[s:e]
        ent = _t_ragged_arange(v.crow[blk], cnt)
        ent_row = torch.repeat_interleave(torch.arange(e - s, device=dev), cnt, output_size=ent.numel())
        m = v.col[ent]
        kc = col_cnt[m]
        pos = _t_ragged_arange(col_ptr[m], kc)
        total = pos.numel()
        i_loc = torch.repeat_interleave(ent_row, kc, output_size=total)
        mins = torch.minimum(torch.repeat_interleave(v.val[ent], kc, output_size=total), col_vals[pos])
        r, cc, sm = _t_coo_sum(i_loc, col_rows[pos], mins, (e - s, n))
        sm = sm.double()
        yield s, e, r, cc, (1.0 - sm / (2.0 - sm)).clamp_(min=0.0).float()
        s = e


def jaccard_torch(v: TorchCSR, rows: torch.Tensor | None = None, max_pairs: int = 1 << 22) -> TorchCSR:
    """d_J of the given rows (default all) against all N columns as a (len(rows), N) :class:`TorchCSR`."""
    n_rows = v.shape[0] if rows is None else rows.numel()
    rs, cs, ds = [], [], []
    for lo, _, r, c, dj in jaccard_blocks_torch(v, rows, max_pairs):
        rs.append(r + lo), cs.append(c), ds.append(dj)
    return _t_csr(torch.cat(rs), torch.cat(cs), torch.cat(ds), (n_rows, v.shape[1]))


def jaccard_distance_device(features, k1: int = 30, k2: int = 6, *, convention: Convention = "cluster",
                            device="auto", rows=None, max_pairs: int = 1 << 22) -> sp.csr_matrix:
    """:func:`jaccard_distance` with every stage on ``device`` (torch; ``auto`` = cuda when present).

    Returns the same scipy CSR as :func:`jaccard_distance` (within float rounding)."""
    from reidkit.evaluation.knn_graph import knn_device, resolve_device

    x_np = check_features(features)
    n = x_np.shape[0]
    dev = resolve_device(device)
    length = min(n, k1 + 1 if convention == "rerank" else k1)
    if convention not in ("rerank", "cluster"):
        raise KReciprocalError(f"unknown convention {convention!r}; use 'rerank' or 'cluster'")
    if k1 < 1 or k2 < 1:
        raise KReciprocalError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    with torch.no_grad():
        x = torch.from_numpy(x_np).to(dev)
        gi, gd, rmax = knn_device(x, max(length, min(k2, n)), want_max=convention == "rerank")
        v = kreciprocal_encoding_torch(x, gi, gd, k1, k2, convention=convention, row_max=rmax)
        r = None if rows is None else torch.as_tensor(np.asarray(rows, dtype=np.int64), device=dev)
        return jaccard_torch(v, r, max_pairs).to_scipy()
