"""Ranking one query against an index, optionally re-ranked (the web UI's re-ranking toggle).

Re-ranking methods need the query's neighbourhood, not the whole gallery: we fetch the top
``candidates(k)`` from the index, take their stored vectors (PQ-decoded for ivfpq), and re-rank
that small set with the evaluation package's re-rankers (:mod:`reidkit.evaluation.rerank`,
:mod:`reidkit.evaluation.rerank_gcr`). Results beyond the candidate set keep their index order.
"""
from __future__ import annotations

import numpy as np

from reidkit.retrieval.index import GalleryIndex, normalise


def candidates(k: int, n: int) -> int:
    """How many neighbours to re-rank: k-reciprocal sets (k1=20) need a neighbourhood well past k."""
    return min(n, max(4 * k, 100))


def _methods() -> dict:
    """Installed re-rankers: name -> fn(query (1, D), gallery (C, D), camids (C,)) -> distances (C,).

    Parameters are the papers' Market-1501 defaults. GCR runs without profile vectors here: their
    per-camera statistics would come from ~100 neighbours of one query, not from the gallery.
    """
    try:
        from reidkit.evaluation.rerank import kreciprocal_rerank, query_expansion
    except ImportError:
        return {}

    def kreciprocal(q, g, camids):
        return kreciprocal_rerank(q, g, k1=20, k2=6, lambda_value=0.3)[0]

    def qe(q, g, camids):
        q2, g2 = query_expansion(q, g, k=5, alpha=3.0)
        return 1.0 - g2 @ q2[0]

    methods = {"kreciprocal": kreciprocal, "qe": qe}
    try:
        from reidkit.evaluation.rerank_gcr import gcr
    except ImportError:
        return methods

    def gcr_local(q, g, camids):
        q2, g2 = gcr(q, g, np.array([-1]), camids, "market", pvg=False)
        return 1.0 - g2 @ q2[0]

    methods["gcr"] = gcr_local
    return methods


def available() -> list[str]:
    return sorted(_methods())


def ranked_ids(index: GalleryIndex, query: np.ndarray, k: int, method: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """``(ids (<=k,), scores (<=k,))`` for one (D,) query; higher is better. Scores are cosines,
    or ``1 - d`` with ``d`` the re-ranked distance (for qe / gcr: the cosine of the refined features)."""
    query = normalise(np.asarray(query, np.float32).reshape(1, -1))  # gallery vectors are unit length
    if method == "none":
        res = index.search(query, k)
        keep = res.ids[0] >= 0
        return res.ids[0][keep], res.scores[0][keep]
    fn = _methods()[method]
    res = index.search(query, candidates(k, len(index)))
    ids = res.ids[0][res.ids[0] >= 0]
    dist = np.asarray(fn(query, index.vectors(ids), index.items.camids[ids]), np.float64).reshape(-1)
    order = np.argsort(dist, kind="stable")[:k]
    return ids[order], (1.0 - dist[order]).astype(np.float32)
