"""Ranking one query against an index, optionally re-ranked (the web UI's re-ranking toggle).

Re-ranking methods need the query's neighbourhood, not the whole gallery: we fetch the top
``candidates(k)`` from the index, take their stored vectors (PQ-decoded for ivfpq), and re-rank
that small set with the evaluation package's re-rankers (:mod:`reidkit.evaluation.rerank`,
:mod:`reidkit.evaluation.rerank_gcr`). Results beyond the candidate set keep their index order.
"""
from __future__ import annotations

import numpy as np

from reidkit.retrieval.index import GalleryIndex


def candidates(k: int, n: int) -> int:
    """How many neighbours to re-rank: k-reciprocal sets (k1=20) need a neighbourhood well past k."""
    return min(n, max(4 * k, 100))


def _methods() -> dict:
    """Re-rankers that are installed: name -> fn(query (1, D), gallery (C, D)) -> distances (C,)."""
    return {}


def available() -> list[str]:
    return sorted(_methods())


def ranked_ids(index: GalleryIndex, query: np.ndarray, k: int, method: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """``(ids (<=k,), scores (<=k,))`` for one (D,) query; scores are cosines, or minus the
    re-ranked distance when a re-ranker ordered them (higher is always better)."""
    query = np.asarray(query, np.float32).reshape(1, -1)
    if method == "none":
        res = index.search(query, k)
        keep = res.ids[0] >= 0
        return res.ids[0][keep], res.scores[0][keep]
    fn = _methods()[method]
    res = index.search(query, candidates(k, len(index)))
    ids = res.ids[0][res.ids[0] >= 0]
    dist = np.asarray(fn(query, index.vectors(ids)), np.float64).reshape(-1)
    order = np.argsort(dist, kind="stable")[:k]
    return ids[order], (-dist[order]).astype(np.float32)
