"""The ranking metrics as a plain per-query loop, written to be read (and to check ``metrics.py``).

Same definitions, protocols and tie rule as ``metrics.evaluate_distmat`` (see its module docstring),
with none of its speed: every query sorts the whole gallery. Use it to understand a number, or to
test a faster evaluator against it; ``tests/evaluation/test_metrics.py`` does both.

For each query:
  1. order the gallery by distance, ties by gallery index (a stable sort of the float32 distances);
  2. drop junk (pid -1) and, under ``market``/``cuhk03``, the same-pid same-camera entries; under
     ``no-camera`` drop only the query's own image (``self_index``);
  3. mark the positives (same pid) among what is left; a query without any is skipped;
  4. AP = mean of precision at each positive, INP = positives / rank of the last one, and the CMC
     row is 1 from the rank of the first positive on.
Under ``cuhk03`` the CMC row is instead averaged over ``repeats`` draws that keep one gallery image
per identity (the one with the lowest ``metrics.sample_priority``, so that both implementations draw
the same images).
"""
from __future__ import annotations

import numpy as np
import torch

from reidkit.evaluation.metrics import MetricError, sample_priority


def evaluate_reference(distmat, q_pids, g_pids, q_camids=None, g_camids=None, *, protocol: str = "market",
                       max_rank: int = 50, self_index=None, cuhk03_repeats: int = 10, seed: int = 0) -> dict:
    """``{'mAP', 'mINP', 'cmc', 'num_valid_queries', 'num_skipped_queries', 'AP', 'INP'}`` by the loop."""
    distmat = np.asarray(distmat, dtype=np.float32)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    n_q, n_g = distmat.shape
    q_camids = np.full(n_q, -1) if q_camids is None else np.asarray(q_camids)
    g_camids = np.full(n_g, -1) if g_camids is None else np.asarray(g_camids)
    if np.isnan(distmat).any():
        raise MetricError("distances contain NaN")
    max_rank = min(max_rank, int((g_pids != -1).sum()))
    ap, inp = np.full(n_q, np.nan), np.full(n_q, np.nan)
    cmc_rows = []
    for i in range(n_q):
        order = np.argsort(distmat[i], kind="stable")  # ties: lower gallery index first
        kept = [j for j in order if not _removed(i, j, q_pids, g_pids, q_camids, g_camids, protocol, self_index)]
        hits = np.array([q_pids[i] != -1 and g_pids[j] == q_pids[i] for j in kept], dtype=bool)
        if not hits.any():
            continue
        ranks = np.flatnonzero(hits) + 1  # 1-based ranks of the positives
        ap[i] = np.mean(np.arange(1, len(ranks) + 1) / ranks)
        inp[i] = len(ranks) / ranks[-1]
        if protocol == "cuhk03":
            first = [_single_shot_first_hit(i, kept, g_pids, q_pids[i], seed, r) for r in range(cuhk03_repeats)]
            cmc_rows.append(np.mean([np.arange(max_rank) >= f for f in first], axis=0))
        else:
            cmc_rows.append((np.arange(max_rank) >= ranks[0] - 1).astype(np.float64))
    valid = ~np.isnan(ap)
    if not valid.any():
        raise MetricError(f"no query has a valid gallery match under protocol {protocol!r}")
    return {"mAP": float(ap[valid].mean()), "mINP": float(inp[valid].mean()), "cmc": np.mean(cmc_rows, axis=0),
            "num_valid_queries": int(valid.sum()), "num_skipped_queries": int(n_q - valid.sum()),
            "AP": ap, "INP": inp}


def _removed(i, j, q_pids, g_pids, q_camids, g_camids, protocol, self_index) -> bool:
    """Whether gallery entry j leaves query i's ranking under ``protocol``."""
    if g_pids[j] == -1:
        return True  # junk
    if protocol == "no-camera":
        return self_index is not None and j == self_index[i]  # the query's own image
    return g_pids[j] == q_pids[i] and g_camids[j] == q_camids[i]  # same identity, same camera


def _single_shot_first_hit(i, kept, g_pids, pid, seed, repeat) -> int:
    """0-based rank of the positive among one drawn image per identity (CUHK03 single-shot)."""
    prio = sample_priority(seed, repeat, torch.tensor([i]), torch.as_tensor(np.asarray(kept, np.int64)))[0]
    drawn = {}  # identity -> the kept entry with the lowest priority
    for j, p in zip(kept, prio.tolist()):
        if g_pids[j] not in drawn or p < drawn[g_pids[j]][1]:
            drawn[g_pids[j]] = (j, p)
    chosen = [j for j in kept if drawn[g_pids[j]][0] == j]  # still in ranking order
    return [g_pids[j] == pid for j in chosen].index(True)
