"""Metrics against plain per-query loops written here (stable sort = ties by gallery index)."""
import numpy as np
import pytest
import torch

from reidkit.evaluation.distances import compute_distance
from reidkit.evaluation.featurefile import FeatureSet
from reidkit.evaluation.metrics import (MetricError, evaluate, evaluate_distmat, sample_priority,
                                        sort_keys)


def reference(distmat, qp, gp, qc, gc, max_rank, protocol="market", self_index=None):
    aps, inps, cmcs, skipped = [], [], [], 0
    for i in range(len(qp)):
        order = np.argsort(distmat[i], kind="stable")
        keep = []
        for j in order:
            if gp[j] == -1:
                continue
            if protocol == "market" and gp[j] == qp[i] and gc[j] == qc[i]:
                continue
            if protocol == "no-camera" and self_index is not None and j == self_index[i]:
                continue
            keep.append(j)
        hits = [1 if (gp[j] == qp[i] and qp[i] >= 0) else 0 for j in keep]
        if sum(hits) == 0:
            skipped += 1
            continue
        found, precs, last = 0, [], 0
        for r, h in enumerate(hits):
            if h:
                found += 1
                precs.append(found / (r + 1))
                last = r
        aps.append(sum(precs) / found)
        inps.append(found / (last + 1))
        first = hits.index(1)
        cmcs.append([1.0 if first <= r else 0.0 for r in range(max_rank)])
    return np.mean(aps), np.mean(inps), np.mean(cmcs, axis=0), len(aps), skipped


def random_problem(rng, n_q=40, n_g=200, n_ids=15, n_cams=3, levels=None):
    qp = rng.integers(0, n_ids, n_q)
    qp[:2] = [n_ids + 10, -1]  # one identity absent from the gallery, one junk query: both skipped
    gp = rng.integers(-1, n_ids + 3, n_g)  # junk -1 and ids never queried (distractors)
    qc, gc = rng.integers(0, n_cams, n_q), rng.integers(0, n_cams, n_g)
    if levels:  # few distinct values -> many ties
        d = rng.integers(0, levels, (n_q, n_g)).astype(np.float32) / levels
    else:
        d = rng.random((n_q, n_g), dtype=np.float32)
        d += (gp[None, :] == qp[:, None]) * -0.3 * rng.random((n_q, n_g), dtype=np.float32)
    return d, qp, gp, qc, gc


@pytest.mark.parametrize("levels", [None, 5, 1])
@pytest.mark.parametrize("chunk", [None, 7])
def test_market_matches_loops(levels, chunk):
    rng = np.random.default_rng(levels or 0)
    d, qp, gp, qc, gc = random_problem(rng, levels=levels)
    res = evaluate_distmat(d, qp, gp, qc, gc, max_rank=20, chunk=chunk)
    m_ap, m_inp, cmc, n_valid, n_skip = reference(d, qp, gp, qc, gc, 20)
    assert res["num_valid_queries"] == n_valid and res["num_skipped_queries"] == n_skip
    assert n_skip > 0  # the problem does exercise skipping
    np.testing.assert_allclose(res["mAP"], m_ap, rtol=1e-12)
    np.testing.assert_allclose(res["mINP"], m_inp, rtol=1e-12)
    np.testing.assert_allclose(res["cmc"], cmc, rtol=1e-12)


def test_hand_computed_case():
    # one query (pid 1, cam 0); gallery sorted by distance: [neg, pos, same-cam pos (removed), junk, neg, pos]
    d = np.array([[0.1, 0.2, 0.25, 0.3, 0.4, 0.5]], np.float32)
    gp = np.array([2, 1, 1, -1, 3, 1])
    gc = np.array([1, 1, 0, 1, 2, 2])
    res = evaluate_distmat(d, [1], gp, [0], gc, max_rank=4)
    # valid order: neg, pos(rank 2), neg, pos(rank 4): AP = (1/2 + 2/4)/2, INP = 2/4
    assert res["mAP"] == pytest.approx(0.5) and res["mINP"] == pytest.approx(0.5)
    np.testing.assert_allclose(res["cmc"], [0, 1, 1, 1])


def test_ties_and_negative_zero():
    # all at distance 0 (one as -0.0): order is the gallery index
    d = np.array([[0.0, -0.0, 0.0]], np.float32)
    res = evaluate_distmat(d, [1], [2, 1, 1], [0], [1, 1, 1], max_rank=3)
    assert res["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    keys = sort_keys(torch.tensor([[-1.0, -2.0, 0.0, 3.0, -0.0, float("inf"), float("-inf")]]))
    assert torch.argsort(keys[0]).tolist() == [6, 1, 0, 2, 4, 3, 5]


def test_features_api_and_metrics():
    rng = np.random.default_rng(3)
    d, qp, gp, qc, gc = random_problem(rng)
    qf, gf = rng.normal(size=(40, 8)).astype(np.float32), rng.normal(size=(200, 8)).astype(np.float32)
    q, g = FeatureSet(qf, qp, qc), FeatureSet(gf, gp, gc)
    for metric in ("cosine", "euclidean", "sqeuclidean"):
        res = evaluate(query=q, gallery=g, metric=metric, max_rank=10, chunk=9)
        if metric == "cosine":
            qn, gn = qf / np.linalg.norm(qf, axis=1, keepdims=True), gf / np.linalg.norm(gf, axis=1, keepdims=True)
            dm = 1 - qn @ gn.T
        else:
            dm = ((qf[:, None, :] - gf[None]) ** 2).sum(-1)
        ref = reference(dm, qp, gp, qc, gc, 10)
        np.testing.assert_allclose(res["mAP"], ref[0], rtol=1e-9)
        np.testing.assert_allclose(res["cmc"], ref[2])
    dist = compute_distance(qf, gf, "euclidean").numpy()
    np.testing.assert_allclose(dist, np.sqrt(((qf[:, None, :] - gf[None]) ** 2).sum(-1)), rtol=1e-4, atol=1e-4)


def test_no_camera_protocol_by_index_and_by_path():
    rng = np.random.default_rng(5)
    n = 60
    pids = rng.integers(0, 12, n)
    feats = rng.normal(size=(n, 6)).astype(np.float32)
    fs = FeatureSet(feats, pids, np.full(n, -1))
    with pytest.raises(MetricError, match="no-camera"):
        evaluate(query=fs, gallery=fs)
    res = evaluate(query=fs, gallery=fs, protocol="no-camera", max_rank=5)
    fn = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    ref = reference(1 - fn @ fn.T, pids, pids, None, None, 5, protocol="no-camera", self_index=np.arange(n))
    np.testing.assert_allclose(res["mAP"], ref[0], rtol=1e-9)
    np.testing.assert_allclose(res["cmc"], ref[2])
    assert res["num_skipped_queries"] == ref[4]
    # by path: query is a subset of the gallery, in another order
    paths = [f"img{i}.jpg" for i in range(n)]
    g = FeatureSet(feats, pids, np.full(n, -1), paths)
    sub = np.arange(0, n, 3)[::-1]
    q = FeatureSet(feats[sub], pids[sub], np.full(len(sub), -1), [paths[i] for i in sub])
    res = evaluate(query=q, gallery=g, protocol="no-camera", max_rank=5)
    ref = reference(1 - fn[sub] @ fn.T, pids[sub], pids, None, None, 5, protocol="no-camera", self_index=sub)
    np.testing.assert_allclose(res["mAP"], ref[0], rtol=1e-9)


def cuhk03_reference(distmat, qp, gp, qc, gc, max_rank, repeats, seed):
    """torchreid's single-shot loop, drawing one image per identity with the same priorities."""
    cmcs = []
    for i in range(len(qp)):
        order = np.argsort(distmat[i], kind="stable")
        keep = [j for j in order if gp[j] != -1 and not (gp[j] == qp[i] and gc[j] == qc[i])]
        if not any(gp[j] == qp[i] for j in keep):
            continue
        cmc = np.zeros(max_rank)
        for r in range(repeats):
            prio = sample_priority(seed, r, torch.tensor([i]), torch.arange(len(gp)))[0].numpy()
            best = {}
            for j in keep:
                if gp[j] not in best or prio[j] < prio[best[gp[j]]]:
                    best[gp[j]] = j
            chosen = [j for j in keep if best[gp[j]] == j]
            first = [gp[j] == qp[i] for j in chosen].index(True)
            cmc += [1.0 if first <= k else 0.0 for k in range(max_rank)]
        cmcs.append(cmc / repeats)
    return np.mean(cmcs, axis=0)


def test_cuhk03_single_shot():
    rng = np.random.default_rng(7)
    d, qp, gp, qc, gc = random_problem(rng, n_q=25, n_g=120, n_ids=10)
    res = evaluate_distmat(d, qp, gp, qc, gc, protocol="cuhk03", max_rank=8, cuhk03_repeats=4, seed=3, chunk=6)
    np.testing.assert_allclose(res["cmc"], cuhk03_reference(d, qp, gp, qc, gc, 8, 4, 3), rtol=1e-12)
    full = evaluate_distmat(d, qp, gp, qc, gc, max_rank=8)
    assert res["mAP"] == full["mAP"]  # AP uses the whole filtered gallery
    again = evaluate_distmat(d, qp, gp, qc, gc, protocol="cuhk03", max_rank=8, cuhk03_repeats=4, seed=3)
    np.testing.assert_array_equal(res["cmc"], again["cmc"])  # chunking does not change the draws


def test_tpr_at_fpr():
    rng = np.random.default_rng(11)
    d, qp, gp, qc, gc = random_problem(rng, n_q=30, n_g=150)
    fprs = (0.001, 0.01, 0.2)
    res = evaluate_distmat(d, qp, gp, qc, gc, tpr_fprs=fprs, chunk=4)
    pos, neg = [], []
    for i in range(len(qp)):
        m = [j for j in range(len(gp)) if gp[j] == qp[i] and gc[j] != qc[i] and qp[i] != -1]
        if not m:
            continue
        pos += [d[i, j] for j in m]
        neg += [d[i, j] for j in range(len(gp)) if gp[j] != qp[i] and gp[j] != -1]
    neg = np.sort(neg)
    for f in fprs:
        thr = neg[int(np.floor(f * len(neg)))]
        assert np.mean(np.array(pos) < thr) == pytest.approx(res["tpr@fpr"][f])
        assert np.sum(neg < thr) <= f * len(neg)


def test_errors():
    d = np.zeros((2, 3), np.float32)
    with pytest.raises(MetricError, match="shape"):
        evaluate_distmat(d, [1, 2, 3], [1, 2, 3], [0, 0, 0], [1, 1, 1])
    with pytest.raises(MetricError, match="protocol"):
        evaluate_distmat(d, [1, 2], [1, 2, 3], [0, 0], [1, 1, 1], protocol="duke")
    with pytest.raises(MetricError, match="no query has a valid"):
        evaluate_distmat(d, [7, 8], [1, 2, 3], [0, 0], [1, 1, 1])
    with pytest.raises(MetricError, match="NaN"):
        evaluate_distmat(np.full((2, 3), np.nan, np.float32), [1, 2], [1, 2, 3], [0, 0], [1, 1, 1])


def test_no_camera_with_junk_and_layouts():
    rng = np.random.default_rng(13)
    n = 50
    pids = rng.integers(-1, 8, n)  # some junk in the gallery (and junk queries: skipped)
    feats = rng.normal(size=(n, 5)).astype(np.float32)
    paths = [f"p{i}.png" for i in range(n)]
    g = FeatureSet(feats, pids, np.full(n, -1), paths)
    sub = np.array([3, 17, 29, 41, 8, 0])
    q = FeatureSet(feats[sub], pids[sub], np.full(len(sub), -1), [paths[i] for i in sub])
    res = evaluate(query=q, gallery=g, protocol="no-camera", metric="euclidean", max_rank=5)
    dm = ((feats[sub][:, None] - feats[None]) ** 2).sum(-1)
    ref = reference(dm, pids[sub], pids, None, None, 5, protocol="no-camera", self_index=sub)
    np.testing.assert_allclose(res["mAP"], ref[0], rtol=1e-9)
    np.testing.assert_allclose(res["cmc"], ref[2])
    assert res["num_skipped_queries"] == ref[4]


def test_distmat_layouts_and_dtypes():
    rng = np.random.default_rng(17)
    d, qp, gp, qc, gc = random_problem(rng)
    base = evaluate_distmat(d, qp, gp, qc, gc)
    for variant in (np.asfortranarray(d), d.astype(np.float64), torch.from_numpy(d.T.copy()).T):
        res = evaluate_distmat(variant, qp, gp, qc, gc, chunk=5)
        assert res["mAP"] == base["mAP"] and (res["cmc"] == base["cmc"]).all()
