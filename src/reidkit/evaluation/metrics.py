"""Ranking metrics for re-identification: CMC, mAP, mINP and TPR@FPR.

Protocols (``protocol=``)
  * ``market`` (Market-1501 / DukeMTMC-reID / MSMT17): for each query, gallery entries with the same
    pid **and** the same camera are removed, and junk entries (pid ``-1``) are ignored. Distractors
    (pid ``0``) stay in the gallery as negatives.
  * ``no-camera``: for data without camera ids. Only the query image itself is removed from its own
    ranking: the gallery entry with the same path when both sets carry paths; without paths, the
    entry with the same index when query and gallery are the same set (same object, or identical
    features and labels). Every other same-pid gallery entry is a positive.
  * ``cuhk03``: the classic CUHK03 single-shot protocol. The filtering is ``market``'s; CMC is then
    averaged over ``cuhk03_repeats`` random draws that keep one gallery image per identity. mAP and
    mINP use the full filtered gallery (as torchreid and fast-reid do).
Queries with no positive left after filtering (or with pid ``-1``) are skipped and counted in
``num_skipped_queries``; every average is over the ``num_valid_queries`` others.

Definitions (per valid query, ranks 1-based among the gallery entries that survive filtering)
  * CMC(r): 1 if the first positive is at rank <= r. ``cmc`` is the mean over queries, rank-1 first.
  * AP = mean over the positives p_1 < ... < p_m of ``i / rank(p_i)``.
  * INP = ``m / rank(p_m)`` (the hardest positive, Ye et al. 2021).
  * TPR@FPR f: over all valid (query, gallery) pairs, the threshold t is the ``floor(f * N_neg) + 1``-th
    smallest negative distance; TPR is the fraction of positive pairs with distance < t (so at most
    ``f * N_neg`` negatives are accepted).

Tie rule: entries at exactly equal distance are ordered by gallery index, as a stable sort would.

How it stays fast without sorting: a query has few positives, so instead of sorting its whole row we
sort its positives only, and count for each positive the negatives that come before it with one
batched ``searchsorted`` (keys pack ``(distance bits, gallery index)`` into one int64, which makes the
tie rule exact). Work is ``O(N_q N_g log m)`` in query chunks of bounded size, so peak extra memory
is ``O(chunk * N_g)`` whatever the gallery size.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from reidkit.evaluation.distances import DistanceFunction, check_metric
from reidkit.evaluation.featurefile import FeatureSet

PROTOCOLS = ("market", "cuhk03", "no-camera")
DEFAULT_FPRS = (1e-4, 1e-3, 1e-2)
_CHUNK_ELEMENTS = 1 << 22  # query rows per chunk = this / N_g  (about 100 MB of temporaries)
_INT64_MAX = torch.iinfo(torch.int64).max


class MetricError(ValueError):
    """Inputs the evaluator cannot use (shapes, labels, protocol), with the problem named."""


# ---------------------------------------------------------------------------------------------
# public API


def evaluate(distmat: np.ndarray | torch.Tensor | None = None, *, query: FeatureSet, gallery: FeatureSet,
             metric: str = "cosine", protocol: str = "market", max_rank: int = 50, chunk: int | None = None,
             tpr_fprs: tuple[float, ...] | None = None, cuhk03_repeats: int = 10, seed: int = 0,
             per_query: bool = False) -> dict:
    """Evaluate a query set against a gallery.

    ``distmat`` (N_q, N_g) is optional: without it distances are computed chunk by chunk from the
    features with ``metric`` ('cosine', 'euclidean', 'sqeuclidean'), so the full matrix never exists.
    Returns ``{'mAP', 'mINP', 'cmc' (np.ndarray, rank-1 first), 'num_valid_queries',
    'num_skipped_queries'}`` plus ``'tpr@fpr'`` ({fpr: tpr}) when ``tpr_fprs`` is given and
    ``'AP'``/``'INP'`` arrays (NaN for skipped queries) when ``per_query``.
    """
    self_index = None
    if protocol == "no-camera":
        self_index = query_self_index(query, gallery)
    if distmat is None:
        check_metric(metric)
        fn = DistanceFunction(gallery.features, metric)
        q = torch.from_numpy(query.features)
        rows: Callable[[int, int], torch.Tensor] = lambda s, e: fn(q[s:e])
    else:
        rows = _distmat_rows(distmat, len(query), len(gallery))
    return _evaluate(rows, query.pids, gallery.pids, query.camids, gallery.camids, protocol=protocol,
                     max_rank=max_rank, chunk=chunk, self_index=self_index, tpr_fprs=tpr_fprs,
                     cuhk03_repeats=cuhk03_repeats, seed=seed, per_query=per_query)


def evaluate_distmat(distmat: np.ndarray | torch.Tensor, q_pids, g_pids, q_camids=None, g_camids=None, *,
                     protocol: str = "market", max_rank: int = 50, chunk: int | None = None,
                     self_index: np.ndarray | None = None, tpr_fprs: tuple[float, ...] | None = None,
                     cuhk03_repeats: int = 10, seed: int = 0, per_query: bool = False) -> dict:
    """Same as ``evaluate`` on plain arrays and a precomputed (N_q, N_g) distance matrix (re-ranking).

    For ``no-camera``, ``self_index`` (N_q,) gives the gallery index of each query's own image
    (-1: none); camera ids may then be omitted.
    """
    q_pids, g_pids = np.asarray(q_pids).reshape(-1), np.asarray(g_pids).reshape(-1)
    q_camids = np.full(len(q_pids), -1) if q_camids is None else np.asarray(q_camids).reshape(-1)
    g_camids = np.full(len(g_pids), -1) if g_camids is None else np.asarray(g_camids).reshape(-1)
    rows = _distmat_rows(distmat, len(q_pids), len(g_pids))
    return _evaluate(rows, q_pids, g_pids, q_camids, g_camids, protocol=protocol, max_rank=max_rank,
                     chunk=chunk, self_index=self_index, tpr_fprs=tpr_fprs, cuhk03_repeats=cuhk03_repeats,
                     seed=seed, per_query=per_query)


def query_self_index(query: FeatureSet, gallery: FeatureSet) -> np.ndarray:
    """(N_q,) gallery index of each query's own image, -1 where it is not in the gallery.

    By path when both sets have paths; otherwise by index when both are the same set.
    """
    if query.paths is not None and gallery.paths is not None:
        where = {p: i for i, p in enumerate(gallery.paths)}
        return np.array([where.get(p, -1) for p in query.paths], dtype=np.int64)
    same = query is gallery or (
        len(query) == len(gallery) and np.array_equal(query.pids, gallery.pids)
        and np.array_equal(query.camids, gallery.camids) and np.array_equal(query.features, gallery.features))
    if same:
        return np.arange(len(query), dtype=np.int64)
    return np.full(len(query), -1, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# the engine


def _distmat_rows(distmat, n_q: int, n_g: int) -> Callable[[int, int], torch.Tensor]:
    d = torch.from_numpy(distmat) if isinstance(distmat, np.ndarray) else distmat
    if not isinstance(d, torch.Tensor) or d.ndim != 2:
        raise MetricError(f"distmat must be a 2-D array, got {type(distmat).__name__}")
    if tuple(d.shape) != (n_q, n_g):
        raise MetricError(f"distmat shape {tuple(d.shape)} does not match {n_q} queries x {n_g} gallery")
    return lambda s, e: d[s:e].float()


def sort_keys(d: torch.Tensor) -> torch.Tensor:
    """(B, G) float distances -> (B, G) int64 keys ordering by (distance, gallery index).

    The float32 bit pattern, mapped so that signed-int order equals float order, goes in the high
    32 bits and the gallery index in the low 32: comparing keys applies the tie rule exactly.
    """
    d = d.float() + 0.0  # turns -0.0 into +0.0 so both zeros tie
    bits = d.view(torch.int32).to(torch.int64)
    bits = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negative floats: reverse magnitude order
    return (bits << 32) | torch.arange(d.shape[1], dtype=torch.int64)


def _masks(qp, qc, gp, gc, self_idx, protocol):
    """Positive and negative (B, G) masks after the protocol's filtering."""
    same_pid = gp[None, :] == qp[:, None]
    real = gp[None, :] >= 0  # junk (-1) is neither positive nor negative
    pos = same_pid & (qp[:, None] >= 0)
    neg = ~same_pid & real
    if protocol == "no-camera":
        if self_idx is not None:
            is_self = torch.arange(len(gp))[None, :] == self_idx[:, None]
            pos &= ~is_self
            neg &= ~is_self
    else:
        pos &= gc[None, :] != qc[:, None]
    return pos, neg


def positive_ranks(key: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """0-based ranks of each query's positives among its valid entries, sorted.

    Returns ``ranks`` (B, P_max) int64 (padded with -1) and ``n_pos`` (B,).
    """
    n_pos = pos.sum(1)
    p_max = int(n_pos.max()) if len(n_pos) else 0
    b = len(key)
    if p_max == 0:
        return torch.full((b, 0), -1, dtype=torch.int64), n_pos
    rows, cols = pos.nonzero(as_tuple=True)  # row-major
    start = torch.cumsum(n_pos, 0) - n_pos
    slot = torch.arange(len(rows)) - start[rows]
    pkeys = torch.full((b, p_max), _INT64_MAX, dtype=torch.int64)
    pkeys[rows, slot] = key[rows, cols]
    pkeys = pkeys.sort(dim=1).values
    # bucket j of a negative = number of positives ahead of it; negatives before positive k are
    # those with bucket <= k.
    bucket = torch.searchsorted(pkeys, key)
    counts = torch.zeros(b, p_max + 1, dtype=torch.int64).scatter_add_(1, bucket, neg.to(torch.int64))
    ranks = torch.arange(p_max) + counts.cumsum(1)[:, :p_max]
    ranks[torch.arange(p_max)[None, :] >= n_pos[:, None]] = -1
    return ranks, n_pos


def sample_priority(seed: int, repeat: int, q_index: torch.Tensor, g_index: torch.Tensor) -> torch.Tensor:
    """Deterministic pseudo-random int64 priorities for (query, gallery) pairs (CUHK03 draws).

    A splitmix64-style hash of (seed, repeat, query index, gallery index): the draw for a pair does
    not depend on chunking, so results are identical for any ``chunk``.
    """
    salt = ((seed * 1_000_003 + repeat + 1) * 0x5BE0CD19137E2179) % (1 << 64)
    salt -= (1 << 64) if salt >= 1 << 63 else 0  # as a signed int64
    x = q_index[:, None] * 0x3C6EF372FE94F82B + g_index[None, :] * 0x1F83D9ABFB41BD6B + salt
    for mult in (0x3F58476D1CE4E5B9, 0x14D049BB133111EB):  # int64 products wrap, as intended
        x = x ^ ((x >> 31) & 0x1FFFFFFFF)
        x = x * mult
    return x ^ ((x >> 29) & 0x7FFFFFFFF)


def _single_shot_hits(key, pos, neg, gp_group, n_groups, q_index, g_index, seed, repeat):
    """(B,) 0-based rank of the sampled positive among one sampled image per identity (-1: none)."""
    valid = pos | neg
    prio = sample_priority(seed, repeat, q_index, g_index).masked_fill(~valid, _INT64_MAX)
    group = gp_group[None, :].expand_as(prio)
    best = torch.full((len(key), n_groups), _INT64_MAX, dtype=torch.int64)
    best.scatter_reduce_(1, group, prio, reduce="amin")
    chosen = valid & (prio == best.gather(1, group))
    pkey = torch.where(pos & chosen, key, _INT64_MAX).min(1).values
    rank = (neg & chosen & (key < pkey[:, None])).sum(1)
    return torch.where(pkey < _INT64_MAX, rank, -1)


def _evaluate(rows, q_pids, g_pids, q_camids, g_camids, *, protocol, max_rank, chunk, self_index,
              tpr_fprs, cuhk03_repeats, seed, per_query) -> dict:
    if protocol not in PROTOCOLS:
        raise MetricError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    qp, gp = torch.as_tensor(np.asarray(q_pids, np.int64)), torch.as_tensor(np.asarray(g_pids, np.int64))
    qc, gc = torch.as_tensor(np.asarray(q_camids, np.int64)), torch.as_tensor(np.asarray(g_camids, np.int64))
    n_q, n_g = len(qp), len(gp)
    if len(qc) != n_q or len(gc) != n_g:
        raise MetricError(f"label lengths differ: {n_q} query pids vs {len(qc)} camids, "
                          f"{n_g} gallery pids vs {len(gc)} camids")
    if n_g == 0 or n_q == 0:
        raise MetricError(f"empty {'gallery' if n_g == 0 else 'query set'}")
    if protocol != "no-camera" and ((qc < 0).all() or (gc[gp >= 0] < 0).all()):
        raise MetricError("camera ids are unknown (-1); the market/cuhk03 protocols need them: "
                          "use protocol 'no-camera'")
    if max_rank < 1:
        raise MetricError(f"max_rank must be >= 1, got {max_rank}")
    max_rank = min(max_rank, n_g)
    sidx = None if self_index is None else torch.as_tensor(np.asarray(self_index, np.int64))
    if chunk is None:
        chunk = max(1, _CHUNK_ELEMENTS // n_g)
    if protocol == "cuhk03":
        _, inverse = torch.unique(gp, return_inverse=True)
        n_groups = int(inverse.max()) + 1
    fprs = tuple(tpr_fprs) if tpr_fprs else ()
    if fprs and not all(0 < f < 1 for f in fprs):
        raise MetricError(f"FPR targets must lie in (0, 1), got {fprs}")
    keep_neg = int(max(fprs) * n_q * n_g) + 1 if fprs else 0
    neg_small, pos_d, n_neg_total = torch.empty(0), [], 0

    ap = torch.full((n_q,), float("nan"), dtype=torch.float64)
    inp = ap.clone()
    first_hist = torch.zeros(max_rank + 1, dtype=torch.float64)  # last bin: first hit beyond max_rank
    for s in range(0, n_q, chunk):
        e = min(n_q, s + chunk)
        d = rows(s, e)
        if torch.isnan(d).any():
            raise MetricError(f"distances contain NaN (query rows {s}..{e - 1})")
        key = sort_keys(d)
        pos, neg = _masks(qp[s:e], qc[s:e], gp, gc, None if sidx is None else sidx[s:e], protocol)
        ranks, n_pos = positive_ranks(key, pos, neg)
        ok = n_pos > 0
        if ranks.shape[1]:
            k = torch.arange(1, ranks.shape[1] + 1, dtype=torch.float64)
            prec = torch.where(ranks >= 0, k / (ranks + 1).double(), 0.0)
            last = ranks.gather(1, (n_pos - 1).clamp_min(0)[:, None])[:, 0]
            ap[s:e] = torch.where(ok, prec.sum(1) / n_pos.clamp_min(1), float("nan"))
            inp[s:e] = torch.where(ok, n_pos / (last + 1).double(), float("nan"))
        if protocol == "cuhk03":
            qi, gi = torch.arange(s, e), torch.arange(n_g)
            for r in range(cuhk03_repeats):
                hit = _single_shot_hits(key, pos, neg, inverse, n_groups, qi, gi, seed, r)
                first_hist += torch.bincount(hit[ok].clamp_max(max_rank), minlength=max_rank + 1) / cuhk03_repeats
        elif ranks.shape[1]:
            first_hist += torch.bincount(ranks[ok, 0].clamp_max(max_rank), minlength=max_rank + 1)
        if fprs:
            pos_d.append(d[pos & ok[:, None]])
            negs = d[neg & ok[:, None]]
            n_neg_total += len(negs)
            if len(negs):
                neg_small = torch.cat([neg_small, torch.topk(negs, min(keep_neg, len(negs)), largest=False,
                                                                 sorted=False).values])
                if len(neg_small) > keep_neg:
                    neg_small = torch.topk(neg_small, keep_neg, largest=False, sorted=False).values

    valid = ~torch.isnan(ap)
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise MetricError(f"no query has a valid gallery match under protocol {protocol!r} "
                          f"({n_q} queries skipped); check pids/camids or use protocol 'no-camera'")
    out = {
        "mAP": float(ap[valid].mean()),
        "mINP": float(inp[valid].mean()),
        "cmc": (first_hist[:max_rank].cumsum(0) / n_valid).numpy(),
        "num_valid_queries": n_valid,
        "num_skipped_queries": n_q - n_valid,
        "protocol": protocol,
    }
    if fprs:
        out["tpr@fpr"] = _tpr_at_fpr(torch.cat(pos_d), neg_small.sort().values, n_neg_total, fprs)
    if per_query:
        out["AP"], out["INP"] = ap.numpy(), inp.numpy()
    return out


def _tpr_at_fpr(pos_d: torch.Tensor, neg_sorted_small: torch.Tensor, n_neg: int, fprs) -> dict[float, float]:
    res = {}
    for f in fprs:
        n = math.floor(f * n_neg)  # 0-based index of the threshold negative
        thr = neg_sorted_small[n] if n < len(neg_sorted_small) else torch.tensor(float("inf"))
        res[float(f)] = float((pos_d < thr).double().mean()) if len(pos_d) else float("nan")
    return res
