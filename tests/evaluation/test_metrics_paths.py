"""The evaluator's internal branches against the readable loop (``evaluation/reference.py``).

Ranking blocks (one row each vs many), ties found in the sorted candidates, queries without any
valid gallery entry (with NaN among their distances too), and the from-features path: reused
per-worker distance buffers (market, no-camera) vs fresh ones (cuhk03, TPR@FPR), junk gallery
columns dropped before the GEMM, and chunk sizing.
"""
import numpy as np
import pytest
import torch

from reidkit.evaluation import metrics
from reidkit.evaluation.featurefile import FeatureSet
from reidkit.evaluation.metrics import MetricError, evaluate, evaluate_distmat
from reidkit.evaluation.reference import evaluate_reference


def tied_problem(rng, n_q=30, n_g=120, n_ids=8, levels=6):
    """Few distinct distance values (ties everywhere), junk, distractors and skipped queries."""
    qp = rng.integers(0, n_ids, n_q)
    qp[:3] = [n_ids + 5, -1, n_ids + 6]  # absent from the gallery or junk: skipped
    gp = rng.integers(-1, n_ids + 2, n_g)
    qc, gc = rng.integers(0, 3, n_q), rng.integers(0, 3, n_g)
    d = rng.integers(0, levels, (n_q, n_g)).astype(np.float32) / levels
    d[:, ::11] = -0.0  # -0.0 ties +0.0
    return d, qp, gp, qc, gc


def assert_same(res, ref, atol=1e-12):
    for key in ("mAP", "mINP", "cmc"):
        np.testing.assert_allclose(res[key], ref[key], rtol=0, atol=atol)
    assert res["num_valid_queries"] == ref["num_valid_queries"]


@pytest.mark.parametrize("block", [1, 2, 1 << 20])
@pytest.mark.parametrize("levels", [2, 6, 1000])
def test_ranking_blocks_and_ties_match_reference(monkeypatch, block, levels):
    rng = np.random.default_rng(levels)
    d, qp, gp, qc, gc = tied_problem(rng, levels=levels)
    monkeypatch.setattr(metrics, "_BLOCK_ELEMENTS", block * d.shape[1])  # rows per ranking block
    ref = evaluate_reference(d, qp, gp, qc, gc, max_rank=50)
    for chunk in (None, 1, 7):
        res = evaluate_distmat(d, qp, gp, qc, gc, max_rank=50, chunk=chunk, per_query=True)
        assert_same(res, ref)
        np.testing.assert_allclose(res["AP"], ref["AP"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(res["INP"], ref["INP"], rtol=0, atol=1e-12)
    assert ref["num_skipped_queries"] >= 3


def test_tie_right_after_a_positive_and_at_the_row_end():
    # query pid 1 cam 0; positives at idx 1 (0.3, tied with neg idx 4 after it) and idx 5 (0.9, the
    # row's last candidate, tied with neg idx 2 before it): order neg0, pos1, neg4, neg2, pos5, neg3
    d = np.array([[0.1, 0.3, 0.9, 1.5, 0.3, 0.9]], np.float32)
    gp, gc = np.array([2, 1, 3, 4, 5, 1]), np.ones(6, np.int64)
    for fn in (evaluate_distmat, evaluate_reference):
        res = fn(d, [1], gp, [0], gc, max_rank=6)
        assert res["mAP"] == pytest.approx((1 / 2 + 2 / 5) / 2, abs=1e-15)
        assert res["mINP"] == pytest.approx(2 / 5, abs=1e-15)


def test_queries_without_valid_gallery_entries():
    rng = np.random.default_rng(5)
    d, qp, gp, qc, gc = tied_problem(rng, levels=1000)
    qp[5:9] = 99  # no gallery entry: skipped, and their rows are never sorted
    gp[(gp == qp[9])] = qp[9]
    gc[(gp == qp[9])] = qc[9]  # every same-pid entry on the query's camera: filtered out, skipped
    res = evaluate_distmat(d, qp, gp, qc, gc, max_rank=20, per_query=True)
    ref = evaluate_reference(d, qp, gp, qc, gc, max_rank=20)
    assert_same(res, ref)
    assert np.isnan(res["AP"][[0, 1, 2, 5, 6, 7, 8, 9]]).all()
    with pytest.raises(MetricError, match="no query has a valid gallery match"):
        evaluate_distmat(d[:3], qp[:3], gp, qc[:3], gc)


@pytest.mark.parametrize("row", [0, 4])  # 0: a skipped query (no positive); 4: a valid one
def test_nan_names_the_query_row(row):
    rng = np.random.default_rng(7)
    d, qp, gp, qc, gc = tied_problem(rng, levels=1000)
    negative = np.flatnonzero(gp != qp[row])[0]
    d[row, negative] = np.nan
    with pytest.raises(MetricError, match=f"NaN \\(query row {row}\\)"):
        evaluate_distmat(d, qp, gp, qc, gc, chunk=3)


def feature_problem(rng, n_q=70, n_g=260, dim=12, n_ids=9):
    centres = rng.normal(size=(n_ids, dim))
    qp, gp = rng.integers(0, n_ids, n_q), rng.integers(0, n_ids, n_g)
    gp[::9] = -1  # junk columns, dropped before the GEMM
    qf = (centres[qp] + 1.2 * rng.normal(size=(n_q, dim))).astype(np.float32)
    gf = (centres[np.maximum(gp, 0)] + 1.2 * rng.normal(size=(n_g, dim))).astype(np.float32)
    return (FeatureSet(qf, qp, rng.integers(0, 3, n_q)), FeatureSet(gf, gp, rng.integers(0, 3, n_g)))


def numpy_distances(q, g, metric):
    qf, gf = q.features.astype(np.float64), g.features.astype(np.float64)
    if metric == "cosine":
        qf, gf = qf / np.linalg.norm(qf, axis=1, keepdims=True), gf / np.linalg.norm(gf, axis=1, keepdims=True)
        return 1 - qf @ gf.T
    sq = ((qf[:, None, :] - gf[None]) ** 2).sum(-1)
    return np.sqrt(sq) if metric == "euclidean" else sq


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "sqeuclidean"])
@pytest.mark.parametrize("protocol", ["market", "cuhk03"])  # reused buffers vs fresh ones
def test_features_path_matches_reference(metric, protocol):
    rng = np.random.default_rng(11)
    q, g = feature_problem(rng)
    ref = evaluate_reference(numpy_distances(q, g, metric), q.pids, g.pids, q.camids, g.camids, max_rank=30,
                             protocol=protocol, cuhk03_repeats=2)
    before = torch.get_num_threads()
    try:
        for threads, chunk in ((1, None), (2, 8), (2, 1)):
            torch.set_num_threads(threads)
            res = evaluate(query=q, gallery=g, metric=metric, protocol=protocol, max_rank=30, chunk=chunk,
                           cuhk03_repeats=2, tpr_fprs=(0.01,) if protocol == "cuhk03" else None)
            assert_same(res, ref, atol=1e-9)
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_features_path_reused_buffers_equal_fresh_ones():
    rng = np.random.default_rng(13)
    q, g = feature_problem(rng, n_q=90)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        reused = evaluate(query=q, gallery=g, chunk=7, per_query=True)  # 13 chunks on 2 workers
        fresh = evaluate(query=q, gallery=g, chunk=7, per_query=True, tpr_fprs=(0.1,))
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(reused["AP"], fresh["AP"])
    np.testing.assert_array_equal(reused["cmc"], fresh["cmc"])
    rows = metrics.FeatureRows(metrics.DistanceFunction(g.features), torch.from_numpy(q.features))
    out = np.full((5, len(g)), np.nan, np.float32)
    assert rows(3, 8, out=out) is out and (out >= 0).all()
    np.testing.assert_array_equal(out, rows(3, 8))


@pytest.mark.parametrize("n_q,n_g,threads", [(11659, 82161, 2), (3368, 15913, 2), (5, 100, 2), (3000, 10, 3),
                                              (1, 5_000_000, 1)])
def test_feature_chunks_are_capped_and_even(n_q, n_g, threads):
    rows = metrics._default_chunk(n_q, n_g, from_features=True, workers=threads)
    n_chunks = -(-n_q // rows)
    assert 1 <= rows <= metrics._GEMM_MAX_ROWS
    assert rows * n_g <= max(metrics._GEMM_ELEMENTS, n_g)
    assert n_chunks == 1 or n_chunks % threads == 0
    assert metrics._default_chunk(n_q, n_g, False, threads) == max(1, metrics._CHUNK_ELEMENTS // n_g)
