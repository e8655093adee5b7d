"""Exact k-nearest-neighbour graph (squared Euclidean) of N feature vectors in O(N*k) memory.

The graph is the first stage of the k-reciprocal Jaccard distance (``reidkit.evaluation.kreciprocal``).
An N x N distance matrix never exists: rows are processed in blocks of ``block`` rows.

On CPU the cost is the N x N x D product. On CPUs with fast bfloat16 matrix units (AMX, AVX512-BF16)
a bf16 product is ~3x faster than fp32 but too coarse to rank neighbours. So ``precision="auto"``
shortlists K + margin candidates per row with the bf16 product, re-scores them exactly in fp32, and
*certifies* each row: with e the bf16 rounding residuals (measured per vector) and u = 2^-8, every
non-shortlisted j satisfies  true score <= s_last + u|s_last| + e_i |b|max + |a_i| e_max + accumulation,
so if the exact K-th score beats that bound, the top K are exactly those of an fp32 search. Rows that
fail the certificate (rare) are recomputed with the fp32 product. The result therefore equals the fp32
search up to ties, whichever precision runs.

Scores: with a_i = [x_i, 1] and b_j = [x_j, -|x_j|^2 / 2], a_i . b_j = (|x_i|^2 - d_ij) / 2, so the
largest scores are the nearest neighbours for any feature norms.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import reverse_cuthill_mckee

KnnMethod = Literal["auto", "torch", "faiss"]
Precision = Literal["auto", "fp32", "bf16"]
Device = Literal["auto", "cpu", "cuda"]

_U_BF16 = 2.0 ** -8  # unit round-off of bfloat16 (8 significant bits)


class KnnError(ValueError):
    """Bad input to the kNN graph (shapes, k, non-finite features)."""


@dataclass(frozen=True)
class KnnGraph:
    """The K nearest neighbours of each of N samples, nearest first, self at rank 0.

    ``indices`` (N, K) int64; ``sqdist`` (N, K) float32 squared Euclidean distances (exact fp32);
    ``row_max`` (N,) float32 largest squared distance from each sample to any sample (the re-ranking
    convention needs it), or None when not requested.
    """

    indices: np.ndarray
    sqdist: np.ndarray
    row_max: np.ndarray | None = None


def check_features(features) -> np.ndarray:
    """(N, D) float32 C-contiguous numpy copy/view of ``features`` (numpy or torch), validated."""
    if isinstance(features, torch.Tensor):
        features = features.detach().float().cpu().numpy()
    x = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise KnnError(f"features must be a non-empty (N, D) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise KnnError("features contain NaN or Inf")
    return x


def resolve_device(device: "str | torch.device | None") -> torch.device:
    """``"auto"``/None -> cuda when available, else cpu; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` as given.

    Asking for CUDA where there is none is a clear error, not a silent fallback.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(str(device))
        except RuntimeError:
            raise KnnError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from None
    if dev.type not in ("cpu", "cuda"):
        raise KnnError(f"unsupported device {device!r}; use 'auto', 'cpu' or 'cuda'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise KnnError(f"device={device!r} but CUDA is not available here; use device='cpu' or 'auto'")
    return dev


class exact_fp32:
    """Context: fp32 matrix products stay fp32 on CUDA (no TF32), so GPU results match the CPU path."""

    def __enter__(self):
        self._saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return self

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self._saved
        return False


@lru_cache(maxsize=1)
def bf16_is_fast() -> bool:
    """Whether a bf16 matrix product beats fp32 by >= 1.8x on this CPU (measured once, ~50 ms)."""
    a = torch.randn(256, 512)
    b = torch.randn(4096, 512)
    ab, bb = a.bfloat16(), b.bfloat16()

    def best(fn):
        t = []
        for _ in range(3):
            s = time.perf_counter()
            fn()
            t.append(time.perf_counter() - s)
        return min(t)

    return best(lambda: ab @ bb.T) * 1.8 < best(lambda: a @ b.T)


def _fp32_block(x, sq, s, e, k, want_max):
    d = torch.addmm(sq[None, :], x[s:e], x.T, beta=1.0, alpha=-2.0)
    d.add_(sq[s:e, None]).clamp_(min=0.0)
    rmax = d.amax(1) if want_max else None
    ar = torch.arange(e - s, device=d.device)
    d[ar, ar + s] = -1.0  # self first, whatever rounding says
    v, ix = torch.topk(d.neg_(), k, dim=1)
    v = v.neg_()
    v[:, 0] = 0.0
    return ix, v, rmax


def _merge_smallest(bv: torch.Tensor, bi: torch.Tensor, v: torch.Tensor, ix: torch.Tensor, k: int):
    """The k smallest of two candidate lists per row, ascending: returns (values, indices)."""
    v2, pos = torch.topk(torch.cat([bv, v], 1), k, dim=1, largest=False, sorted=True)
    return v2, torch.gather(torch.cat([bi, ix], 1), 1, pos)


def _merge_candidates(bv: torch.Tensor, bi: torch.Tensor, r: torch.Tensor, c: torch.Tensor, val: torch.Tensor,
                      k: int) -> None:
    """Merge sparse candidates (local row ``r`` ascending, global column ``c``, distance ``val``) into the
    per-row lists ``bv``/``bi`` (the k smallest, ascending), in place; rows without a candidate are
    not touched."""
    if r.numel() == 0:
        return
    rows, counts = torch.unique_consecutive(r, return_counts=True)
    total = r.numel()
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(total, device=r.device) - torch.repeat_interleave(starts, counts, output_size=total)
    which = torch.repeat_interleave(torch.arange(rows.numel(), device=r.device), counts, output_size=total)
    m = int(counts.max())
    pv = torch.full((rows.numel(), m), float("inf"), device=val.device)
    pi = torch.full((rows.numel(), m), -1, dtype=torch.int64, device=val.device)
    pv[which, slot] = val
    pi[which, slot] = c
    bv[rows], bi[rows] = _merge_smallest(bv[rows], bi[rows], pv, pi, k)


def _serve_unfilled(d: torch.Tensor, lists, c0: int, dim: int, groups, fscratch: torch.Tensor | None):
    """The lists of ``d``'s rows (``dim=1``; columns start at ``c0``) or of its columns (``dim=0``; rows
    start at ``c0``) that do not hold k entries yet take a top-k of their line of the block. Returns
    each list's threshold for the compare pass: its k-th distance, -inf where served here."""
    lines = d if dim == 1 else d.T  # (lists, candidates) view
    n_rows, n_cols = lines.shape
    thrs = []
    for bv, bi, k, cross in lists:
        thr = bv[:, k - 1]
        empty = torch.isinf(thr)
        if bool(empty.any()):
            rows = torch.nonzero(empty).squeeze(1)
            full = len(rows) == n_rows
            if full and dim == 1 and not cross:
                src = d
            else:  # a copy: strided top-k is ~2.5x slower, and the mask below writes
                src = torch.empty(len(rows) * n_cols, device=d.device) if fscratch is None else fscratch
                src = src[:len(rows) * n_cols].view(len(rows), n_cols)
                if full:
                    src.copy_(lines)
                else:
                    torch.index_select(lines, 0, rows, out=src)
                if cross:
                    src.masked_fill_(groups[0][rows][:, None] == groups[1][None, :], float("inf"))
            v, ix = torch.topk(src, min(k, n_cols), dim=1, largest=False, sorted=False)
            bv[rows], bi[rows] = _merge_smallest(bv[rows], bi[rows], v, ix + c0, k)
            thr = thr.masked_fill(empty, float("-inf"))  # served by the top-k above
        thrs.append(thr)
    return thrs


def _offer_tile(d: torch.Tensor, row_lists, col_lists, r0: int, c0: int, groups=None,
                scratch: torch.Tensor | None = None, fscratch: torch.Tensor | None = None) -> None:
    """Offer the distances of tile ``d`` (rows from sample ``r0``, columns from ``c0``) to the lists of
    its rows (``row_lists``) and, off the diagonal, of its columns (``col_lists``, else empty). Lists:
    ``(bv, bi, k, cross)`` tuples, the k smallest (ascending) of those samples; a ``cross`` list only
    takes entries of another group (``groups`` = (of the rows, of the columns)).

    Lists not full yet take a top-k (:func:`_serve_unfilled`). A full list can only take entries at or
    below its current k-th distance, so ONE compare pass of the whole tile against the loosest of all
    those thresholds (a scalar) finds every possible entry; each survivor is then checked against the
    thresholds of its row's and its column's lists and the few kept are merged. The candidates kept
    are the same up to ties. ``scratch`` (bool) and ``fscratch`` (float): reused buffers of
    >= ``d.numel()``."""
    g_rows = g_cols = None
    if groups is not None:
        g_rows, g_cols = groups
    thr_r = _serve_unfilled(d, row_lists, c0, 1, (g_rows, g_cols), fscratch)
    thr_c = _serve_unfilled(d, col_lists, r0, 0, (g_cols, g_rows), fscratch) if col_lists else []
    loosest = max(float(t.max()) for t in thr_r + thr_c)
    if loosest == float("-inf"):
        return
    mask = torch.empty(d.shape, dtype=torch.bool, device=d.device) if scratch is None else \
        scratch[:d.numel()].view(d.shape)
    if d.device.type == "cpu":  # numpy's compare and flatnonzero: 2.3x and 7x torch's on a sparse tile
        np.less_equal(d.numpy(), np.float32(loosest), out=mask.numpy())
        flat = torch.from_numpy(np.flatnonzero(mask.numpy()))
        r, c = flat // d.shape[1], flat % d.shape[1]  # row-major: r ascending
    else:
        r, c = torch.nonzero(torch.le(d, loosest, out=mask), as_tuple=True)
    if r.numel() == 0:
        return
    val = d[r, c]
    for (bv, bi, k, cross), thr in zip(row_lists, thr_r):
        keep = val <= thr[r]
        if cross:
            keep &= g_rows[r] != g_cols[c]
        _merge_candidates(bv, bi, r[keep], c[keep] + c0, val[keep], k)
    for (bv, bi, k, cross), thr in zip(col_lists, thr_c):
        keep = val <= thr[c]
        if cross:
            keep &= g_rows[r] != g_cols[c]
        cc, order = torch.sort(c[keep], stable=True)
        _merge_candidates(bv, bi, cc, r[keep][order] + r0, val[keep][order], k)


def knn_symmetric(x: torch.Tensor, k: int, want_max: bool = False, block: int = 2048,
                  workers: int | None = None, groups: torch.Tensor | None = None, k_cross: int = 0):
    """:func:`knn_device` computing each pair's distance once: the distance is symmetric, so every
    (B, B) block on or above the diagonal serves the top-k of its rows and (transposed) of its
    columns -- half the N x N x D product of the plain blocked search. Once a row's list holds k
    entries, a block is filtered against the list's k-th distance instead of running a top-k (a
    compare pass; few entries survive), see :func:`_offer_tile`.

    ``workers`` (CPU; default: torch's thread count) threads each take whole row blocks and run
    single-threaded torch on them with lists of their own, merged at the end: no fork-join per
    block, so every epilogue op runs in parallel too and a descheduled thread stalls no one (on 2
    shared cores, 2 MKL threads per product spent 1.6-1.8x the CPU time of one). Same result up to
    ties and fp32 rounding (~1e-7 rel), whatever ``block`` and ``workers``.

    With ``groups`` (N,) int and ``k_cross`` > 0, the same pass also returns each row's ``k_cross``
    nearest samples of another group (self excluded; index -1 and distance inf where fewer exist):
    ``(indices, sqdist, row_max, cross_indices, cross_sqdist)``."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from reidkit.evaluation.threads import one_blas_thread, one_thread

    n = x.shape[0]
    scale = float(x.norm(dim=1).max()) or 1.0
    xs = x.float() / scale
    sq = (xs * xs).sum(1)
    starts = list(range(0, n, block))
    lhs = rhs = None
    if x.device.type != "cpu":
        workers = 1
    else:
        # [x_i, |x_i|^2, 1] . [-2 x_j, 1, |x_j|^2] = |x_i - x_j|^2: each tile is one numpy product with
        # no epilogue pass. OpenBLAS beats torch's MKL on these tiles here: 2 workers on 2 cores ran
        # 4,096 x 4,096 x 768 products at 172 vs 154 GFLOP/s in all, and one worker's whole search at
        # N = 28,146 took 7.5 s vs 13.4 s (single-thread GEMM figures swing 80-150 GFLOP/s on this VM)
        one = torch.ones(n, 1)
        lhs = torch.cat([xs, sq[:, None], one], 1).numpy()
        rhs = torch.cat([-2.0 * xs, one, sq[:, None]], 1).numpy()
    workers = max(1, min(workers or torch.get_num_threads(), len(starts)))
    cross = groups is not None and k_cross > 0
    kc = min(k_cross, n) if cross else 0

    def new_lists(width):
        return (torch.full((n, width), float("inf"), device=x.device),
                torch.full((n, width), -1, dtype=torch.int64, device=x.device))

    lists = [(*new_lists(k), torch.full((n,), float("-inf"), device=x.device) if want_max else None,
              *(new_lists(kc) if cross else (None, None))) for _ in range(workers)]
    queue = iter(starts)  # row blocks, largest first; each worker pulls the next
    lock = threading.Lock()

    def work(w: int) -> None:
        if workers > 1:
            torch.set_num_threads(1)  # OpenMP's thread count is per thread: MKL would fan out again
        bv, bi, rmax, cv, ci = lists[w]
        # one distance tile and one mask per worker, reused: a fresh 64 MB tile per block pair is a
        # fresh mmap, page-faulted again each time (31 of 187 CPU-s were system time at N = 93,820)
        tile = torch.empty(min(block, n) * min(block, n), device=x.device)
        scratch = torch.empty(tile.numel(), dtype=torch.bool, device=x.device)
        fscratch = torch.empty_like(tile)  # the top-k copies while lists fill up
        while True:
            with lock:
                s = next(queue, None)
            if s is None:
                return
            e = min(n, s + block)
            for t in range(s, n, block):
                f = min(n, t + block)
                d = tile[:(e - s) * (f - t)].view(e - s, f - t)
                if lhs is not None:  # the whole distance tile from one OpenBLAS product
                    np.matmul(lhs[s:e], rhs[t:f].T, out=d.numpy())
                else:
                    torch.addmm(sq[t:f][None, :], xs[s:e], xs[t:f].T, beta=1.0, alpha=-2.0, out=d)
                    d.add_(sq[s:e, None])  # not clamped at 0: clamping only merges ranks at 0; values are below
                if want_max:
                    torch.maximum(rmax[s:e], d.amax(1), out=rmax[s:e])
                    if t != s:
                        torch.maximum(rmax[t:f], d.amax(0), out=rmax[t:f])
                if t == s:
                    d.fill_diagonal_(-1.0)  # self first, whatever rounding says
                rows = [(bv[s:e], bi[s:e], k, False)] + ([(cv[s:e], ci[s:e], kc, True)] if cross else [])
                cols = [] if t == s else \
                    [(bv[t:f], bi[t:f], k, False)] + ([(cv[t:f], ci[t:f], kc, True)] if cross else [])
                _offer_tile(d, rows, cols, s, t, (groups[s:e], groups[t:f]) if cross else None, scratch, fscratch)

    with torch.no_grad():
        if workers == 1:
            work(0)
        else:
            with one_thread(), one_blas_thread(), ThreadPoolExecutor(workers) as pool:
                list(pool.map(work, range(workers)))
        bv, bi, rmax, cv, ci = lists[0]
        for v2, i2, m2, cv2, ci2 in lists[1:]:
            for s in starts:  # merged in row blocks: the concatenation stays small
                e = min(n, s + block)
                bv[s:e], bi[s:e] = _merge_smallest(bv[s:e], bi[s:e], v2[s:e], i2[s:e], k)
                if cross:
                    cv[s:e], ci[s:e] = _merge_smallest(cv[s:e], ci[s:e], cv2[s:e], ci2[s:e], kc)
            if want_max:
                torch.maximum(rmax, m2, out=rmax)
    bv.clamp_(min=0.0)
    bv[:, 0] = 0.0
    s2 = scale * scale
    out = (bi, bv * s2, None if rmax is None else rmax.clamp_(min=0.0) * s2)
    if not cross:
        return out
    missing = torch.isinf(cv)
    ci[missing] = -1
    return (*out, ci, cv.clamp_(min=0.0) * s2)


def pair_dots(x: torch.Tensor, idx: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """(N, k) fp32 dot products x_i . x_idx[i, j], in row chunks small enough for the allocator to reuse
    (2,048 rows x 15 x 768 was a fresh 94 MB mmap per chunk: 1.06M page faults and 3.3 s at N = 93,820,
    against 1.4 s with 256)."""
    out = torch.empty(idx.shape, dtype=x.dtype, device=x.device)
    for s in range(0, len(x), chunk):
        nb = x[idx[s:s + chunk]]  # (B, k, d)
        out[s:s + chunk] = torch.bmm(nb, x[s:s + chunk].unsqueeze(2)).squeeze(2)
    return out


def _knn_rows_fp32(x, sq, rows: np.ndarray, k: int, block: int):
    """fp32 kNN for an arbitrary subset of rows (the certificate's fallback)."""
    idx = np.empty((rows.size, k), dtype=np.int64)
    dist = np.empty((rows.size, k), dtype=np.float32)
    for s in range(0, rows.size, block):
        r = torch.from_numpy(rows[s:s + block])
        d = torch.addmm(sq[None, :], x[r], x.T, beta=1.0, alpha=-2.0).add_(sq[r][:, None]).clamp_(min=0.0)
        d[torch.arange(r.numel()), r] = -1.0
        v, ix = torch.topk(d.neg_(), k, dim=1)
        v = v.neg_()
        v[:, 0] = 0.0
        idx[s:s + r.numel()] = ix.numpy()
        dist[s:s + r.numel()] = v.numpy()
    return idx, dist


def _rescore_prefix(xn: np.ndarray, sqn: np.ndarray, cand: np.ndarray, count: np.ndarray,
                    chunk: int = 128) -> np.ndarray:
    """Exact fp32 |x_i - x_j|^2 for the first ``count[i]`` candidates of each row (others +inf)."""
    n, kk = cand.shape
    out = np.full((n, kk), np.inf, dtype=np.float32)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        m = int(count[s:e].max())
        c = cand[s:e, :m]
        dots = np.einsum("bkd,bd->bk", xn.take(c, axis=0), xn[s:e])
        d = np.maximum(sqn[s:e, None] + sqn[c] - 2.0 * dots, 0.0)
        d[np.arange(m)[None, :] >= count[s:e, None]] = np.inf
        out[s:e, :m] = d
    return out


def _bf16_operands(x: torch.Tensor, sq: torch.Tensor, chunk: int = 4096):
    """a = [x, 1, 0...] and b = [x, -|x|^2/2, 0...] in bf16 (width padded to a multiple of 32), with
    the norms the certificate needs: |a - a16|, |b - b16|, |a16|, |b|, |b16| per row (float64).
    Built in row chunks, so no full-size float32 temporaries are allocated (and page-faulted)."""
    n, d = x.shape
    width = d + 1 + (-(d + 1)) % 32
    a16 = torch.zeros(n, width, dtype=torch.bfloat16)
    b16 = torch.zeros(n, width, dtype=torch.bfloat16)
    norms = torch.empty(5, n, dtype=torch.float64)  # ea, eb, na, |b|, |b16|
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        a = torch.zeros(e - s, width)
        a[:, :d] = x[s:e]
        b = a.clone()
        a[:, d] = 1.0
        b[:, d] = -0.5 * sq[s:e]
        a16[s:e], b16[s:e] = a, b
        a16f, b16f = a16[s:e].float(), b16[s:e].float()
        for row, v in enumerate((a - a16f, b - b16f, a16f, b, b16f)):
            norms[row, s:e] = v.norm(dim=1)
    return (a16, b16, *norms)


def _knn_torch(x_np: np.ndarray, k: int, block: int, want_max: bool, use_bf16: bool,
               margin: int = 40) -> tuple[KnnGraph, int]:
    """Returns the graph and the number of rows that needed the fp32 fallback."""
    n = x_np.shape[0]
    if not use_bf16:
        idx, dist, rmax = knn_symmetric(torch.from_numpy(x_np), k, want_max, max(block, 2048))
        return KnnGraph(idx.numpy(), dist.numpy(), None if rmax is None else rmax.numpy()), 0
    # scale so the largest norm is 1: ranking is unchanged and the bf16 error bound stays small
    scale = float(np.sqrt(np.einsum("nd,nd->n", x_np, x_np).max())) or 1.0
    x = torch.from_numpy(x_np) / scale
    sq = (x * x).sum(1)
    row_max = np.empty(n, dtype=np.float32) if want_max else None

    kk = min(n, k + margin)
    a16, b16, ea, eb, na, b_norm, nb16 = _bf16_operands(x, sq)
    eb_max, b_max, nb16_max = float(eb.max()), float(b_norm.max()), float(nb16.max())
    acc = a16.shape[1] * 2.0 ** -23  # fp32 accumulation, generous
    err = (ea * b_max + na * eb_max + acc * na * nb16_max).numpy()  # (N,) bound on |score error|
    cand = np.empty((n, kk), dtype=np.int64)
    score = np.empty((n, kk), dtype=np.float32)
    buf = torch.empty(min(block, n), n, dtype=a16.dtype)  # reused: a fresh 40 MB block per step page-faults
    with torch.no_grad():
        for s in range(0, n, block):
            e = min(n, s + block)
            sc = torch.mm(a16[s:e], b16.T, out=buf[:e - s])  # (B, N) bf16 scores, larger = nearer
            if want_max:
                row_max[s:e] = _exact_row_max(x, sq, sc, s, e, torch.from_numpy(err[s:e]))
            ar = torch.arange(e - s)
            sc[ar, ar + s] = float("inf")  # self first
            v16, c = torch.topk(sc, kk, dim=1)
            cand[s:e] = c.numpy()
            score[s:e] = v16.float().numpy()
    # Only candidates whose bf16 score is within 2 * (error bound) of the k-th can be in the exact
    # top k (k others are certainly better), so only that prefix is re-scored in fp32. When the prefix
    # reaches the end of the shortlist, unseen columns could qualify too: such rows fall back to fp32.
    score[:, 0] = score[:, 1] if kk > 1 else 0.0  # self's +inf marker
    big = np.maximum(np.abs(score[:, 1 if kk > 1 else 0]), np.abs(score[:, -1])).astype(np.float64)
    slack = 2.0 * (err + _U_BF16 * big) + 1e-6
    thr = score[:, k - 1].astype(np.float64) - slack
    count = np.maximum((score >= thr[:, None]).sum(1), k)
    bad = np.flatnonzero(count >= kk) if kk < n else np.zeros(0, dtype=np.int64)
    count[bad] = k  # recomputed below
    xn, sqn = x.numpy(), sq.numpy()
    d = _rescore_prefix(xn, sqn, cand, count)
    d[:, 0] = -1.0  # self first
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    d = np.take_along_axis(d, order, axis=1)
    cand = np.take_along_axis(cand, order, axis=1)
    d[:, 0] = 0.0
    n_failed = bad.size
    if n_failed:
        cand[bad], d[bad] = _knn_rows_fp32(x, sq, bad, k, block)
    graph = KnnGraph(np.ascontiguousarray(cand), np.ascontiguousarray(d), row_max)
    return _unscale(graph, scale), n_failed


def _unscale(g: KnnGraph, scale: float) -> KnnGraph:
    s2 = scale * scale
    return KnnGraph(g.indices, g.sqdist * s2, None if g.row_max is None else g.row_max * s2)


def _exact_row_max(x, sq, sc, s, e, err, chunk: int = 128) -> np.ndarray:
    """Exact max_j |x_i - x_j|^2 from bf16 scores. The farthest point has the smallest score, up to the
    bf16 error: only j within 2*err (+ rounding) of the row's smallest score can be it; those are
    re-scored in fp32. To find them without a full compare-and-gather pass, each row is cut into
    column chunks: one min pass gives every chunk's minimum, and only chunks whose minimum is within
    reach (usually one per row) are searched."""
    b, n = sc.shape
    full = n // chunk * chunk
    mins = [sc[:, :full].view(b, full // chunk, chunk).amin(2)] if full else []
    if full < n:
        mins.append(sc[:, full:].amin(1, keepdim=True))
    cmin = torch.cat(mins, 1)  # (B, chunks)
    smin = cmin.amin(1).double()
    thresh = smin + 2.0 * _U_BF16 * smin.abs() + 2.0 * err + 1e-6
    thresh16 = (thresh + thresh.abs() * 2.0 ** -7 + 1e-30).to(sc.dtype)  # rounded up, never below
    r, c = torch.nonzero(cmin <= thresh16[:, None], as_tuple=True)
    cols = c[:, None] * chunk + torch.arange(chunk)[None, :]  # (M, chunk) column ids of those chunks
    valid = cols < n
    cols = cols.clamp_(max=n - 1)
    hit = (sc[r[:, None], cols] <= thresh16[r][:, None]) & valid
    rr, cc = torch.nonzero(hit, as_tuple=True)
    rows, js = r[rr], cols[rr, cc]
    d = (sq[rows + s] + sq[js] - 2.0 * (x[rows + s] * x[js]).sum(1)).clamp_(min=0.0)
    out = torch.zeros(e - s)
    out.scatter_reduce_(0, rows, d, reduce="amax")
    return out.numpy()


def _knn_faiss(x: np.ndarray, k: int) -> KnnGraph:
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    dist, idx = index.search(x, k)
    idx = idx.astype(np.int64)
    dist = np.maximum(dist, 0.0).astype(np.float32)
    _self_first(idx, dist)
    return KnnGraph(idx, dist)


def _self_first(idx: np.ndarray, dist: np.ndarray) -> None:
    """Make every row i start with i (exact duplicates may otherwise outrank self), in place."""
    for i in np.flatnonzero(idx[:, 0] != np.arange(idx.shape[0])):
        r, dr = idx[i].tolist(), dist[i].tolist()
        if i in r:
            p = r.index(i)
            del r[p], dr[p]
        else:
            r.pop(), dr.pop()
        idx[i] = [i] + r
        dist[i] = [0.0] + dr


def row_max_sq_distance(features, rows=None, block: int = 2048) -> np.ndarray:
    """(len(rows),) float32: max_j |f_i - f_j|^2 over all N samples j, for each i in ``rows``.

    The classic re-ranking divides each row of the squared distance by this before both the
    V weights and the final blend ``(1 - lambda) d_J + lambda d / max``.
    """
    x = torch.from_numpy(check_features(features))
    sq = (x * x).sum(1)
    q = x if rows is None else x[torch.as_tensor(np.asarray(rows, dtype=np.int64))]
    qsq = (q * q).sum(1)
    out = np.empty(q.shape[0], dtype=np.float32)
    with torch.no_grad():
        for s in range(0, q.shape[0], block):
            e = min(q.shape[0], s + block)
            d = torch.addmm(sq[None, :], q[s:e], x.T, beta=1.0, alpha=-2.0).add_(qsq[s:e, None])
            out[s:e] = d.clamp_(min=0.0).amax(1).numpy()
    return out


def knn_device(x: torch.Tensor, k: int, want_max: bool = False, block: int = 4096):
    """Exact fp32 kNN (squared Euclidean, self first) of ``x`` (N, D) on its own device, blocked:
    O(block * N) workspace. Returns torch ``(indices (N, k) int64, sqdist (N, k) fp32, row_max or None)``
    on that device. The device path of :func:`knn_graph` (and of the torch k-reciprocal kernel)."""
    n = x.shape[0]
    x = x.float()
    scale = float(x.norm(dim=1).max()) or 1.0  # as on CPU: the largest norm is 1
    xs = x / scale
    sq = (xs * xs).sum(1)
    idx = torch.empty(n, k, dtype=torch.int64, device=x.device)
    dist = torch.empty(n, k, device=x.device)
    row_max = torch.empty(n, device=x.device) if want_max else None
    with torch.no_grad(), exact_fp32():
        for s in range(0, n, block):
            e = min(n, s + block)
            ix, v, rmax = _fp32_block(xs, sq, s, e, k, want_max)
            idx[s:e], dist[s:e] = ix, v
            if want_max:
                row_max[s:e] = rmax
    s2 = scale * scale
    return idx, dist * s2, None if row_max is None else row_max * s2


def knn_graph(features, k: int, method: KnnMethod = "auto", precision: Precision = "auto",
              block: int = 1024, want_row_max: bool = False, margin: int = 40,
              device: Device | str = "cpu") -> KnnGraph:
    """Exact k nearest neighbours (squared Euclidean) of every row of ``features`` (N, D), self first.

    ``method``: ``"torch"`` (blocked product + top-k, O(block * N) workspace), ``"faiss"``
    (IndexFlatL2) or ``"auto"`` (torch, the faster on CPU). ``precision`` (torch only): ``"fp32"``,
    ``"bf16"`` (certified bf16 shortlist, see the module docstring) or ``"auto"`` (bf16 where the CPU
    runs it fast). All give the fp32 answer. ``margin``: extra bf16 candidates per row.
    ``device``: ``"cpu"`` (default), ``"cuda"`` or ``"auto"`` (cuda when available): on CUDA the
    blocked fp32 product runs there (``method``/``precision`` are ignored) and the graph comes back
    as numpy; it equals the CPU graph up to ties.
    """
    x = check_features(features)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise KnnError(f"k={k} must be between 1 and the number of samples N={n}")
    dev = resolve_device(device)
    if dev.type == "cuda":
        idx, dist, rmax = knn_device(torch.from_numpy(x).to(dev), k, want_row_max)
        return KnnGraph(idx.cpu().numpy(), dist.cpu().numpy(), None if rmax is None else rmax.cpu().numpy())
    if method == "faiss":
        g = _knn_faiss(x, k)
        return KnnGraph(g.indices, g.sqdist, row_max_sq_distance(x) if want_row_max else None)
    if method not in ("auto", "torch"):
        raise KnnError(f"unknown kNN method {method!r}; use 'auto', 'torch' or 'faiss'")
    if precision not in ("auto", "fp32", "bf16"):
        raise KnnError(f"unknown precision {precision!r}; use 'auto', 'fp32' or 'bf16'")
    use_bf16 = precision == "bf16" or (precision == "auto" and n >= 4096 and bf16_is_fast())
    graph, _ = _knn_torch(x, k, block, want_row_max, use_bf16, margin)
    return graph
