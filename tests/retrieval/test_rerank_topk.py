"""The web UI's re-ranking toggle: top-k candidates from the index, re-ranked by the evaluation package."""
from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from reidkit.retrieval import rerank_topk
from reidkit.retrieval.index import GalleryIndex

pytest.importorskip("reidkit.evaluation.rerank")


@pytest.fixture
def noisy(clustered):
    feats, pids, camids = clustered(12, 8, 32, noise=0.9, seed=5)  # 96 images: all are candidates
    return GalleryIndex.build(feats, pids, camids, kind="flat"), feats, pids


def test_methods_listed():
    assert {"kreciprocal", "qe"} <= set(rerank_topk.available())


def test_kreciprocal_on_the_whole_candidate_set_equals_a_direct_call(noisy):
    from reidkit.evaluation.rerank import kreciprocal_rerank

    idx, feats, _ = noisy
    q = feats[3] + 0.3
    ids, scores = rerank_topk.ranked_ids(idx, q, 10, "kreciprocal")
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    direct = kreciprocal_rerank(unit(q[None]).astype(np.float32), unit(feats), 20, 6, 0.3)[0]
    np.testing.assert_array_equal(ids, np.argsort(direct, kind="stable")[:10])
    np.testing.assert_allclose(scores, 1 - direct[ids], atol=1e-5)
    assert (np.diff(scores) <= 1e-7).all()


def test_qe_scores_are_cosines_of_expanded_features(noisy):
    idx, feats, _ = noisy
    q = feats[10] + 0.2
    # alpha-QE by hand over the candidate set (all 96 vectors): weights max(cos, 0)^3 of 5 neighbours
    g = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q)
    def expand(x, base, with_self):
        sims = base @ x
        order = np.argsort(-sims)[: 6 if with_self else 5]
        agg = (0 if with_self else x) + sum(max(sims[j], 0) ** 3 * base[j] for j in order)
        return agg / np.linalg.norm(agg)
    q2 = expand(qn, g, False)
    g2 = np.stack([expand(v, g, True) for v in g])
    ref = g2 @ q2
    ids, scores = rerank_topk.ranked_ids(idx, q, 8, "qe")
    np.testing.assert_array_equal(ids, np.argsort(-ref, kind="stable")[:8])
    np.testing.assert_allclose(scores, ref[ids], atol=1e-4)


def test_rerank_through_the_api(noisy, tmp_path):
    from reidkit.retrieval.server import create_app

    idx, _, pids = noisy
    idx.save(tmp_path / "ix")
    client = TestClient(create_app(tmp_path / "ix"))
    methods = client.get("/api/info").json()["rerank"]
    assert methods[0] == "none" and "kreciprocal" in methods
    for m in methods:
        body = client.get(f"/api/search?item=5&k=6&rerank={m}").json()
        assert len(body["results"]) == 6, m
        assert len({r["id"] for r in body["results"]}) == 6
