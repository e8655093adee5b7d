"""GCR against a dense implementation of the paper's formulas written here."""
import numpy as np
import pytest

from reidkit.evaluation.rerank_gcr import GCRError, gcr


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def problem(seed=0, n=120, ids=10, cams=3, dim=8):
    rng = np.random.default_rng(seed)
    pid = rng.integers(0, ids, n)
    cam = rng.integers(0, cams, n)
    x = rng.normal(size=(ids, dim))[pid] + 0.4 * rng.normal(size=(cams, dim))[cam] + 0.8 * rng.normal(size=(n, dim))
    return unit(x).astype(np.float32), cam


def dense_pvg(x, cam, n_q, lam, statistics="intra_camera"):
    out = np.empty_like(x, dtype=np.float64)
    groups = np.unique(cam) if statistics == "intra_camera" else [None]
    for c in groups:
        members = np.ones(len(x), bool) if c is None else cam == c
        src = x[(np.arange(len(x)) >= n_q) & members].astype(np.float64)
        p = np.linalg.inv(src.T @ src + len(src) * lam * np.eye(x.shape[1]))
        out[members] = (x[members] - src.mean(0)) @ p.T
    return unit(out)


def dense_gcr(x, cam, k1, k2, b1, b2, s, rounds, mode="nonsym"):
    x = x.astype(np.float64)
    n = len(x)
    for _ in range(rounds):
        a = x @ x.T
        w1, w2 = np.zeros((n, n)), np.zeros((n, n))
        for i in range(n):
            top = [i] + [j for j in np.argsort(-a[i], kind="stable") if j != i][:k1 - 1]
            w1[i, top] = np.exp(a[i, top] / b1)
            other = [j for j in np.argsort(-a[i], kind="stable") if cam[j] != cam[i]][:k2 - 1]
            w2[i, [i] + other] = np.exp(a[i, [i] + other] / b2)
        new = np.zeros_like(x)
        for w, weight in ((w1, 1 - s), (w2, s)):
            if mode == "sym":
                w = (w + w.T) / 2
            lap = w / np.sqrt(w.sum(1)[:, None] * w.sum(0)[None, :])
            new += weight * lap @ x
        x = unit(new)
    return x


def dense_localk(x, cam, k1, k2, b1, b2, s, rounds):
    x = x.astype(np.float64)
    for _ in range(rounds):
        a = x @ x.T
        new = np.zeros_like(x)
        for i in range(len(x)):
            for k, beta, weight, pool in ((k1, b1, 1 - s, None), (k2, b2, s, cam)):
                cand = [j for j in np.argsort(-a[i], kind="stable") if j != i and (pool is None or cam[j] != cam[i])]
                nb = [i] + [j for j in cand[:k - 1] if a[i, j] > 0]
                kern = np.exp(x[nb] @ x[nb].T / beta)
                deg = kern.sum(1)
                new[i] += weight * (kern[0] / np.sqrt(deg[0] * deg)) @ x[nb]
        x = unit(new)
    return x


@pytest.mark.parametrize("mode", ["nonsym", "sym"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_matches_dense_formulas(mode, precision):
    x, cam = problem()
    q2, g2 = gcr(x[:30], x[30:], cam[:30], cam[30:], k1=6, k2=3, beta1=0.2, beta2=0.25, scale=0.3, rounds=2,
                 mode=mode, pvg=False, precision=precision, block=16)
    ref = dense_gcr(x, cam, 6, 3, 0.2, 0.25, 0.3, 2, mode)
    np.testing.assert_allclose(np.concatenate([q2, g2]), ref, atol=2e-5)


def test_pvg_then_rounds_and_statistics():
    x, cam = problem(3)
    q2, g2 = gcr(x[:25], x[25:], cam[:25], cam[25:], k1=5, k2=2, rounds=0, pvg=True, pvg_lambda=0.5)
    np.testing.assert_allclose(np.concatenate([q2, g2]), dense_pvg(x, cam, 25, 0.5), atol=1e-5)
    q2, g2 = gcr(x[:25], x[25:], cam[:25], cam[25:], k1=5, k2=2, rounds=0, pvg=True, pvg_lambda=0.5,
                 statistics="all")
    np.testing.assert_allclose(np.concatenate([q2, g2]), dense_pvg(x, cam, 25, 0.5, "all"), atol=1e-5)
    q2, g2 = gcr(x[:25], x[25:], cam[:25], cam[25:], k1=5, k2=2, rounds=1, pvg=True, pvg_lambda=10.0)
    p = dense_pvg(x, cam, 25, 10.0)
    np.testing.assert_allclose(np.concatenate([q2, g2]), dense_gcr(p, cam, 5, 2, 0.2, 0.2, 0.3, 1), atol=2e-5)


def test_tracklet_profiles_are_shared():
    x, cam = problem(5)
    trk = np.repeat(np.arange(40), 3)  # 40 tracklets of 3 frames
    cam = cam[trk // 3 * 3]  # a tracklet stays in one camera
    q2, g2 = gcr(x[:30], x[30:], cam[:30], cam[30:], rounds=0, tracklets=trk)
    out = np.concatenate([q2, g2])
    np.testing.assert_allclose(out[0::3], out[1::3], atol=1e-6)


def test_localk_matches_dense():
    x, cam = problem(7, n=60)
    q2, g2 = gcr(x[:20], x[20:], cam[:20], cam[20:], k1=5, k2=3, beta1=0.3, beta2=0.3, scale=0.4, rounds=2,
                 mode="localk", pvg=False, precision="fp32")
    ref = dense_localk(x, cam, 5, 3, 0.3, 0.3, 0.4, 2)
    np.testing.assert_allclose(np.concatenate([q2, g2]), ref, atol=2e-5)


def test_identity_settings_and_errors():
    x, cam = problem(2, n=40)
    q2, g2 = gcr(x[:10], x[10:], cam[:10], cam[10:], k1=1, scale=0.0, pvg=False)
    np.testing.assert_allclose(np.concatenate([q2, g2]), x, atol=1e-6)
    # no camera ids: the cross-camera graph is dropped (scale 0) rather than failing
    q3, g3 = gcr(x[:10], x[10:], None, None, k1=4, rounds=1, pvg=False)
    np.testing.assert_allclose(np.concatenate([q3, g3]), dense_gcr(x, np.zeros(40), 4, 1, 0.2, 0.2, 0.0, 1), atol=2e-5)
    with pytest.raises(GCRError, match="mode"):
        gcr(x[:10], x[10:], mode="magic")
    with pytest.raises(GCRError, match="equal D"):
        gcr(x[:10], x[10:, :3])


def test_presets():
    x, cam = problem(4, n=50)
    a = gcr(x[:10], x[10:], cam[:10], cam[10:], "duke", rounds=1)
    b = gcr(x[:10], x[10:], cam[:10], cam[10:], k1=13, pvg=False, rounds=1)
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(GCRError, match="preset"):
        gcr(x[:10], x[10:], cam[:10], cam[10:], "cuhk")


@pytest.mark.parametrize("starved", [False, True])
def test_symmetric_graphs_equal_brute_force(starved):
    # the CPU fp32 path (one symmetric blocked search for both graphs) against a float64 loop;
    # starved: camera 0 holds all but one sample, so its rows have 1 cross-camera sample for k2 - 1 = 2
    import torch

    from reidkit.evaluation.rerank_gcr import knn_graphs

    x, cam = problem(seed=3, n=300, cams=4, dim=8)
    if starved:
        cam = np.zeros_like(cam)
        cam[7] = 2
    idx1, aff1, idx2, aff2 = (t.numpy() for t in knn_graphs(torch.from_numpy(x), torch.from_numpy(cam), 6, 3,
                                                            precision="fp32", block=32))
    a = x.astype(np.float64) @ x.T.astype(np.float64)
    for i in range(len(x)):
        order = [j for j in np.argsort(-a[i], kind="stable") if j != i]
        assert idx1[i, 0] == i and set(idx1[i, 1:]) == set(order[:5])
        other = [j for j in order if cam[j] != cam[i]][:2]
        assert idx2[i, 0] == i and set(idx2[i, 1:1 + len(other)]) == set(other)
        assert (idx2[i, 1 + len(other):] == i).all() and (aff2[i, 1 + len(other):] == -3.0).all()
        np.testing.assert_allclose(aff1[i, 1:], a[i, idx1[i, 1:]], atol=1e-6)
        np.testing.assert_allclose(aff2[i, 1:1 + len(other)], a[i, other], atol=1e-6)
    assert aff1[:, 0].tolist() == aff2[:, 0].tolist() == [1.0] * len(x)
    if starved:
        assert (aff2 == -3.0).sum() == len(x) - 1  # the 299 camera-0 rows miss one entry each
    q2, g2 = gcr(x[:50], x[50:], cam[:50], cam[50:], k1=6, k2=3, rounds=2, pvg=False, precision="fp32", block=32)
    ref = dense_gcr(x, cam, 6, 3, 0.2, 0.2, 0.3, 2)
    np.testing.assert_allclose(np.concatenate([q2, g2]), ref, atol=2e-5)
