"""Metrics against the readable per-query loop (``evaluation/reference.py``; ties by gallery index)."""
import numpy as np
import pytest
import torch

from reidkit.evaluation.distances import compute_distance
from reidkit.evaluation.featurefile import FeatureSet
from reidkit.evaluation.metrics import MetricError, evaluate, evaluate_distmat, sort_keys
from reidkit.evaluation.reference import evaluate_reference


def reference(distmat, qp, gp, qc, gc, max_rank, protocol="market", self_index=None):
    r = evaluate_reference(distmat, qp, gp, qc, gc, protocol=protocol, max_rank=max_rank, self_index=self_index)
    return r["mAP"], r["mINP"], r["cmc"], r["num_valid_queries"], r["num_skipped_queries"]


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
    return evaluate_reference(distmat, qp, gp, qc, gc, protocol="cuhk03", max_rank=max_rank,
                              cuhk03_repeats=repeats, seed=seed)["cmc"]


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


def hard_problem(rng, n_q=30, n_g=400, n_ids=8, n_cams=3, push=0.6, levels=None):
    """Positives pushed *behind* most negatives (a weak model): candidates are most of the gallery."""
    qp = rng.integers(0, n_ids, n_q)
    gp = rng.integers(-1, n_ids + 2, n_g)
    qc, gc = rng.integers(0, n_cams, n_q), rng.integers(0, n_cams, n_g)
    d = rng.random((n_q, n_g)).astype(np.float32)
    d += push * (gp[None, :] == qp[:, None]) * rng.random((n_q, n_g), dtype=np.float32)
    if levels:
        d = np.floor(d * levels).astype(np.float32) / levels
    return d, qp, gp, qc, gc


@pytest.mark.parametrize("push", [0.0, 0.6, 5.0])
@pytest.mark.parametrize("levels", [None, 7])
def test_hard_problems_match_reference(push, levels):
    rng = np.random.default_rng(int(push * 10) + (levels or 0))
    d, qp, gp, qc, gc = hard_problem(rng, push=push, levels=levels)
    ref = evaluate_reference(d, qp, gp, qc, gc, max_rank=400)
    for chunk in (None, 1, 4):
        res = evaluate_distmat(d, qp, gp, qc, gc, max_rank=400, chunk=chunk, per_query=True)
        np.testing.assert_allclose(res["mAP"], ref["mAP"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(res["mINP"], ref["mINP"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(res["cmc"], ref["cmc"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(res["AP"], ref["AP"], rtol=0, atol=1e-12)  # NaN where skipped, both
    if push == 5.0:  # every positive behind every negative: AP is known in closed form
        assert ref["mINP"] == pytest.approx(np.mean([(
            (gp == qp[i]) & (gc != qc[i])).sum() / ((gp != -1) & ~((gp == qp[i]) & (gc == qc[i]))).sum()
            for i in range(len(qp)) if ((gp == qp[i]) & (gc != qc[i])).any()]))


def test_ties_follow_gallery_index():
    # query pid 1 cam 0. Distances tie in pairs: (neg idx 0, pos idx 1) and (pos idx 2, neg idx 3), then
    # -0.0 / +0.0 tie (pos idx 5 at -0.0 after neg idx 4 at +0.0)
    d = np.array([[0.5, 0.5, 0.7, 0.7, 0.0, -0.0]], np.float32)
    gp, gc = np.array([2, 1, 1, 3, 4, 1]), np.array([1, 1, 1, 1, 1, 1])
    # order: neg4(0.0), pos5(-0.0), neg0, pos1, pos2, neg3 -> positives at ranks 2, 4, 5
    expected_ap = (1 / 2 + 2 / 4 + 3 / 5) / 3
    for fn in (evaluate_distmat, evaluate_reference):
        res = fn(d, [1], gp, [0], gc, max_rank=6)
        assert res["mAP"] == pytest.approx(expected_ap, abs=1e-15)
        assert res["mINP"] == pytest.approx(3 / 5, abs=1e-15)
        np.testing.assert_array_equal(res["cmc"], [0, 1, 1, 1, 1, 1])


def test_float64_distances_rank_as_float32():
    # distinct in float64, equal in float32: the documented rule makes them a tie broken by index
    d = np.array([[1.0 + 1e-12, 1.0, 0.2]], np.float64)
    for fn in (evaluate_distmat, evaluate_reference):
        res = fn(d, [1], [1, 2, 3], [0], [1, 1, 1], max_rank=3)
        assert res["mAP"] == pytest.approx(1 / 2)  # neg idx 2, then the pos idx 0 before neg idx 1


def test_threads_do_not_change_results():
    rng = np.random.default_rng(21)
    d, qp, gp, qc, gc = hard_problem(rng, n_q=50, push=0.6)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = evaluate_distmat(d, qp, gp, qc, gc, chunk=3, per_query=True)
        torch.set_num_threads(2)
        two = evaluate_distmat(d, qp, gp, qc, gc, chunk=3, per_query=True)
        assert torch.get_num_threads() == 2  # restored after the pool
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(one["AP"], two["AP"])
    np.testing.assert_array_equal(one["cmc"], two["cmc"])


def test_no_camera_and_cuhk03_on_hard_problems():
    rng = np.random.default_rng(23)
    d, qp, gp, qc, gc = hard_problem(rng, n_q=20, n_g=150, push=0.8, levels=9)
    self_index = rng.integers(-1, 150, 20)
    res = evaluate_distmat(d, qp, gp, protocol="no-camera", self_index=self_index, max_rank=20, chunk=6)
    ref = evaluate_reference(d, qp, gp, protocol="no-camera", self_index=self_index, max_rank=20)
    for key in ("mAP", "mINP", "cmc"):
        np.testing.assert_allclose(res[key], ref[key], rtol=0, atol=1e-12)
    res = evaluate_distmat(d, qp, gp, qc, gc, protocol="cuhk03", max_rank=20, cuhk03_repeats=3, seed=5, chunk=4)
    ref = evaluate_reference(d, qp, gp, qc, gc, protocol="cuhk03", max_rank=20, cuhk03_repeats=3, seed=5)
    for key in ("mAP", "mINP", "cmc"):  # CMC thirds are summed in another order: float rounding only
        np.testing.assert_allclose(res[key], ref[key], rtol=0, atol=1e-9)


def test_matches_fastreid_when_its_code_is_cached():
    """fast-reid's own ``evaluate_py`` (fetched by ``bench/_peers.py``; skipped when not cached)."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    try:
        import _peers
    finally:
        sys.path.pop(0)
    if _peers.fetch(download=False) is None:
        pytest.skip("fast-reid is not in .cache/peers (run bench/eval_speed.py once)")
    rank_py = _peers.rank_py()
    rng = np.random.default_rng(29)
    for push in (0.6, 0.0, -0.3, 5.0):  # no ties: fast-reid's argsort is not stable
        d, qp, gp, qc, gc = hard_problem(rng, n_q=40, n_g=300, push=push)
        gp[gp == -1] = 0  # fast-reid has no junk label; pid 0 is a distractor for both
        qp[qp == 0] = 1
        cmc, aps, inps = rank_py.evaluate_py(d, qp, gp, qc, gc, 50, False)
        res = evaluate_distmat(d, qp, gp, qc, gc, max_rank=50)
        assert res["mAP"] == pytest.approx(np.mean(aps), abs=1e-6)
        assert res["mINP"] == pytest.approx(np.mean(inps), abs=1e-6)
        np.testing.assert_allclose(res["cmc"], cmc, rtol=0, atol=1e-6)


@pytest.mark.parametrize("scale", [1e19, 1e30, 1e-25, 1e-40])
def test_cosine_any_finite_magnitude(scale):
    """Issue 16 item 16: 1e19-sized features overflowed the float32 normalisation (mAP 5% vs 20%)."""
    rng = np.random.default_rng(31)
    n, dim = 60, 16
    pids = rng.integers(0, 6, n)
    feats = (rng.normal(size=(6, dim))[pids] + rng.normal(size=(n, dim))).astype(np.float32)
    q, g = FeatureSet(feats[:20], pids[:20], np.zeros(20, np.int64)), FeatureSet(feats, pids, np.ones(n, np.int64))
    base = evaluate(query=q, gallery=g, max_rank=10, per_query=True)
    big = feats.astype(np.float64) * scale
    big[::7] *= 3.0  # rows of different magnitudes
    qb, gb = FeatureSet(big[:20].astype(np.float32), pids[:20], q.camids), FeatureSet(big.astype(np.float32), pids, g.camids)
    assert np.isfinite(gb.features).all() and np.abs(gb.features).max() > 0
    res = evaluate(query=qb, gallery=gb, max_rank=10, per_query=True)
    np.testing.assert_allclose(res["AP"], base["AP"], atol=1e-6)
    np.testing.assert_allclose(res["cmc"], base["cmc"], atol=1e-6)


def test_non_finite_or_too_large_features_are_refused():
    from reidkit.evaluation.distances import DistanceError
    feats = np.ones((5, 4), np.float32)
    bad = feats.copy()
    bad[3, 1] = np.inf
    fs = FeatureSet(feats, np.arange(5), np.zeros(5, np.int64))
    with pytest.raises(DistanceError, match="query features row 3 is not finite"):
        evaluate(query=FeatureSet(bad, fs.pids, fs.camids), gallery=fs)
    with pytest.raises(DistanceError, match="gallery features row 3 is not finite"):
        evaluate(query=fs, gallery=FeatureSet(bad, fs.pids, fs.camids), metric="euclidean")
    huge = feats * np.float32(1e20)
    with pytest.raises(DistanceError, match="too large for float32 euclidean"):
        evaluate(query=fs, gallery=FeatureSet(huge, fs.pids, fs.camids), metric="euclidean")


def test_no_valid_query_advice_never_suggests_the_protocol_in_use():
    """issue 16 item 8: under no-camera, "use protocol 'no-camera'" is self-contradictory advice."""
    rng = np.random.default_rng(0)
    q = FeatureSet(torch.as_tensor(rng.normal(size=(3, 4)), dtype=torch.float32),
                   np.array([0, 1, 2]), np.array([0, 0, 0]), [f"q{i}.jpg" for i in range(3)])
    g = FeatureSet(torch.as_tensor(rng.normal(size=(3, 4)), dtype=torch.float32),
                   np.array([5, 6, 7]), np.array([1, 1, 1]), [f"g{i}.jpg" for i in range(3)])
    with pytest.raises(MetricError) as info:
        evaluate(query=q, gallery=g, protocol="no-camera", max_rank=3)
    assert "no-camera'" in str(info.value) and "use protocol" not in str(info.value)
    assert "identity" in str(info.value)
    with pytest.raises(MetricError, match="use protocol 'no-camera'"):
        evaluate(query=q, gallery=g, protocol="market", max_rank=3)
