"""The video protocols against a brute-force loop written from the MARS rules."""
import numpy as np
import pytest

from reidkit.evaluation.featurefile import FeatureFileError, FeatureSet, load_features, save_features
from reidkit.evaluation.video import (evaluate_video, gcr_video, image_to_image, image_to_video,
                                      select_query_frames, video_to_video)


def brute_force(qf, qp, qc, gf, gp, gc, max_rank=10):
    """Plain loop: cosine distance, stable sort, drop same pid + same camera and junk, skip no-match queries."""
    qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    aps, cmc, skipped = [], np.zeros(max_rank), 0
    for i in range(len(qf)):
        d = 1.0 - gn @ qn[i]
        order = np.argsort(d.astype(np.float32), kind="stable")
        keep = [j for j in order if gp[j] != -1 and not (gp[j] == qp[i] and gc[j] == qc[i])]
        hits = [gp[j] == qp[i] for j in keep]
        if qp[i] == -1 or not any(hits):
            skipped += 1
            continue
        ranks = [r for r, h in enumerate(hits) if h]
        aps.append(np.mean([(k + 1) / (r + 1) for k, r in enumerate(ranks)]))
        first = ranks[0]
        if first < max_rank:
            cmc[first:] += 1
    return float(np.mean(aps)), cmc / len(aps), skipped


def _sets(seed=0, n_q=12, n_g=40, d=8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, d))
    gp = rng.integers(0, 6, n_g)  # pid 0 = distractor, stays as a negative
    gp[:3] = -1  # junk
    gc = rng.integers(0, 3, n_g)
    qp = rng.integers(1, 8, n_q)  # pids 6, 7 never appear in the gallery: skipped queries
    qc = rng.integers(0, 3, n_q)
    g = centres[np.maximum(gp, 0)] + rng.normal(scale=1.2, size=(n_g, d))
    q = centres[qp] + rng.normal(scale=1.2, size=(n_q, d))
    return q, qp, qc, g, gp, gc


def _tracklets(f, p, c):
    return FeatureSet(f, p, c, [f"t{i}" for i in range(len(f))], {"kind": "tracklets"})


def _frames(f, p, c, per, rng):
    """Frame features: ``per[i]`` noisy frames around tracklet i's feature."""
    owner = np.repeat(np.arange(len(f)), per)
    ff = f[owner] + rng.normal(scale=0.8, size=(len(owner), f.shape[1]))
    return FeatureSet(ff, p[owner], c[owner], None, {"kind": "frames", "tracklet_index": owner.tolist()}), owner


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_video_to_video_equals_brute_force(seed):
    q, qp, qc, g, gp, gc = _sets(seed)
    out = video_to_video(_tracklets(q, qp, qc), _tracklets(g, gp, gc), max_rank=10)
    m, cmc, skipped = brute_force(q, qp, qc, g, gp, gc)
    assert out["mAP"] == pytest.approx(m, abs=1e-6)
    assert np.allclose(out["cmc"], cmc)
    assert out["num_skipped_queries"] == skipped and skipped > 0
    assert out["num_queries_absent"] == int(np.isin(qp, [6, 7]).sum())


@pytest.mark.parametrize("which", ["first", "middle", "all"])
def test_image_to_video_equals_brute_force(which):
    q, qp, qc, g, gp, gc = _sets(3)
    rng = np.random.default_rng(9)
    per = rng.integers(1, 5, len(q))
    frames, owner = _frames(q, qp, qc, per, rng)
    out = image_to_video(frames, _tracklets(g, gp, gc), query_frame=which, max_rank=10)
    starts = np.r_[0, np.cumsum(per)[:-1]]
    rows = {"first": starts, "middle": starts + (per - 1) // 2, "all": np.arange(len(owner))}[which]
    m, cmc, skipped = brute_force(frames.features[rows], qp[owner[rows]], qc[owner[rows]], g, gp, gc)
    assert out["mAP"] == pytest.approx(m, abs=1e-6) and np.allclose(out["cmc"], cmc)
    assert out["num_skipped_queries"] == skipped
    assert select_query_frames(frames, which).meta["tracklet_index"] == owner[rows].tolist()


def test_image_to_image_equals_brute_force_and_drops_own_tracklet():
    q, qp, qc, g, gp, gc = _sets(4)
    rng = np.random.default_rng(2)
    qfr, _ = _frames(q, qp, qc, rng.integers(1, 4, len(q)), rng)
    gfr, _ = _frames(g, gp, gc, rng.integers(1, 4, len(g)), rng)
    out = image_to_image(qfr, gfr, max_rank=10)
    m, cmc, skipped = brute_force(qfr.features, qfr.pids, qfr.camids, gfr.features, gfr.pids, gfr.camids)
    assert out["mAP"] == pytest.approx(m, abs=1e-6) and np.allclose(out["cmc"], cmc)
    assert out["num_skipped_queries"] == skipped


def test_files_and_mode_detection(tmp_path):
    q, qp, qc, g, gp, gc = _sets(5)
    rng = np.random.default_rng(0)
    frames, _ = _frames(q, qp, qc, np.full(len(q), 2), rng)
    save_features(_tracklets(q, qp, qc), tmp_path / "q.npz")
    save_features(frames, tmp_path / "qf.npz")
    save_features(_tracklets(g, gp, gc), tmp_path / "g.safetensors")
    qt, qf, gt = (load_features(tmp_path / n) for n in ("q.npz", "qf.npz", "g.safetensors"))
    assert evaluate_video(qt, gt)["mode"] == "v2v"
    r = evaluate_video(qf, gt)
    assert r["mode"] == "i2v" and r["mAP"] == image_to_video(frames, gt)["mAP"]
    plain = FeatureSet(q, qp, qc)
    with pytest.raises(FeatureFileError, match="cannot tell the video protocol"):
        evaluate_video(plain, gt)
    with pytest.raises(FeatureFileError, match="query: needs tracklets"):
        video_to_video(plain, gt)


def test_gcr_video_profiles_use_query_and_gallery_statistics():
    """rounds=0 leaves only the profile vectors: check them against numpy, per camera."""
    q, qp, qc, g, gp, gc = _sets(6, d=6)
    qs, gs = gcr_video(_tracklets(q, qp, qc), _tracklets(g, gp, gc), rounds=0)
    x = np.concatenate([q, g]).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cams = np.concatenate([qc, gc])
    want = np.empty_like(x)
    for c in np.unique(cams):
        xc = x[cams == c]
        p = np.linalg.inv(xc.T @ xc + len(xc) * 10.0 * np.eye(x.shape[1]))
        want[cams == c] = (x[cams == c] - xc.mean(0)) @ p.T
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert np.allclose(np.concatenate([qs.features, gs.features]), want, atol=1e-5)
    # gallery-only statistics: the profiles of the gallery rows change when queries leave the statistics
    _, gs2 = gcr_video(_tracklets(q, qp, qc), _tracklets(g, gp, gc), statistics_from="gallery", rounds=0)
    assert not np.allclose(gs2.features, gs.features)


def test_gcr_video_reranked_evaluation_runs_on_refined_features():
    q, qp, qc, g, gp, gc = _sets(7, n_q=20, n_g=60)
    qt, gt = _tracklets(q, qp, qc), _tracklets(g, gp, gc)
    r = evaluate_video(qt, gt, rerank="gcr", max_rank=10)
    qs, gs = gcr_video(qt, gt)
    m, cmc, _ = brute_force(qs.features, qp, qc, gs.features, gp, gc)
    assert r["rerank"] == "gcr" and r["mAP"] == pytest.approx(m, abs=1e-6)
