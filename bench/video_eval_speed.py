"""Video evaluation speed on a MARS-sized problem vs image evaluation of the same number of features.

    PYTHONPATH=src python bench/video_eval_speed.py [--repeat 3] [--dim 384] [--gcr]

MARS test sizes: 1,980 query x 9,330 gallery tracklets, 625 test identities over 6 cameras, some
gallery distractors (pid 0) and junk (pid -1), and query identities absent from the gallery (as on
MARS). Features are synthetic (identity centre + camera shift + noise, L2-normalised).

Rows, each timed best-of-``repeat`` with its image peer in the same run:
  * v2v: ``video_to_video`` on tracklet feature sets vs ``evaluate`` on plain feature sets of the
    same arrays (the peer);
  * v2v files: save + load of the two tracklet files (with their per-tracklet frame counts) and the
    evaluation, vs the same for plain image feature files;
  * i2v: ``image_to_video`` picking the first frame of each query tracklet from a frame file of
    1,980 x 8 frames, vs ``evaluate`` of 1,980 image queries against 9,330 gallery features;
  * (``--gcr``) GCR with tracklet profiles, MARS preset, vs GCR on the same arrays as image features.
The metrics of each pair must agree exactly (v2v and i2v vs their peers); the script checks it.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from reidkit.evaluation.featurefile import FeatureSet, load_features, save_features
from reidkit.evaluation.metrics import evaluate
from reidkit.evaluation.video import gcr_video, image_to_video, video_to_video

N_QUERY, N_GALLERY, N_IDS, N_CAMS = 1980, 9330, 625, 6
FRAMES_PER_QUERY = 8


def mars_sized(dim: int, seed: int = 0, noise: float = 1.9, cam_shift: float = 0.35):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_IDS + 1, dim)) / np.sqrt(dim)
    cams = rng.normal(size=(N_CAMS, dim)) / np.sqrt(dim)
    g_pids = rng.integers(1, N_IDS - 20 + 1, N_GALLERY)  # ids N_IDS-19..N_IDS: query-only (absent)
    g_pids[:N_IDS - 20] = np.arange(1, N_IDS - 20 + 1)
    g_pids[-1200:-200] = 0      # distractors
    g_pids[-200:] = -1          # junk
    q_pids = rng.integers(1, N_IDS + 1, N_QUERY)
    q_cams, g_cams = rng.integers(0, N_CAMS, N_QUERY), rng.integers(0, N_CAMS, N_GALLERY)

    def sample(pids, camids, extra_noise=0.0):
        x = centres[np.maximum(pids, 0)] + cam_shift * cams[camids]
        x = x + (noise + extra_noise) * rng.normal(size=(len(pids), dim)) / np.sqrt(dim)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    q, g = sample(q_pids, q_cams), sample(g_pids, g_cams)
    owner = np.repeat(np.arange(N_QUERY), FRAMES_PER_QUERY)
    frames = sample(q_pids[owner], q_cams[owner], extra_noise=0.5)
    return q, g, q_pids, g_pids, q_cams, g_cams, frames, owner


def best_of(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--gcr", action="store_true", help="also time GCR re-ranking with tracklet profiles")
    args = ap.parse_args()

    q, g, qp, gp, qc, gc, frames, owner = mars_sized(args.dim)
    n_frames = [FRAMES_PER_QUERY] * N_QUERY
    qt = FeatureSet(q, qp, qc, None, {"kind": "tracklets", "num_frames": n_frames})
    gt = FeatureSet(g, gp, gc, None, {"kind": "tracklets", "num_frames": [30] * N_GALLERY})
    qi, gi = FeatureSet(q, qp, qc), FeatureSet(g, gp, gc)
    qf = FeatureSet(frames, qp[owner], qc[owner], None, {"kind": "frames", "tracklet_index": owner.tolist()})
    first = FeatureSet(frames[::FRAMES_PER_QUERY], qp, qc)
    rows = []

    t_v, r_v = best_of(lambda: video_to_video(qt, gt), args.repeat)
    t_i, r_i = best_of(lambda: evaluate(query=qi, gallery=gi), args.repeat)
    assert r_v["mAP"] == r_i["mAP"] and np.array_equal(r_v["cmc"], r_i["cmc"])
    rows.append(("v2v (API)", t_v, t_i, r_v))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def files(a, b, fn):
            save_features(a, tmp / "q.npz")
            save_features(b, tmp / "g.npz")
            return fn(load_features(tmp / "q.npz"), load_features(tmp / "g.npz"))

        t_vf, _ = best_of(lambda: files(qt, gt, video_to_video), args.repeat)
        t_if, _ = best_of(lambda: files(qi, gi, lambda a, b: evaluate(query=a, gallery=b)), args.repeat)
    rows.append(("v2v (save + load + eval)", t_vf, t_if, r_v))

    t_iv, r_iv = best_of(lambda: image_to_video(qf, gt, "first"), args.repeat)
    t_ii, r_ii = best_of(lambda: evaluate(query=first, gallery=gi), args.repeat)
    assert r_iv["mAP"] == r_ii["mAP"]
    rows.append(("i2v (first frame of 1,980 x 8)", t_iv, t_ii, r_iv))

    if args.gcr:
        from reidkit.evaluation.rerank_gcr import gcr

        t_gv, _ = best_of(lambda: gcr_video(qt, gt, statistics_from="gallery"), 1)
        t_gi, _ = best_of(lambda: gcr(q, g, qc, gc, "mars"), 1)
        rows.append(("GCR, MARS preset (refine only)", t_gv, t_gi, None))

    print(f"MARS-sized video evaluation: {N_QUERY} query x {N_GALLERY} gallery tracklets, dim {args.dim}, "
          f"best of {args.repeat}")
    print(f"{'row':34s} {'video s':>9s} {'image s':>9s} {'video/image':>12s}")
    for name, tv, ti, _ in rows:
        print(f"{name:34s} {tv:9.3f} {ti:9.3f} {tv / ti:12.2f}")
    print(f"v2v: mAP {100 * r_v['mAP']:.2f}, {r_v['num_valid_queries']} valid, {r_v['num_skipped_queries']} "
          f"skipped ({r_v['num_queries_absent']} absent ids); i2v mAP {100 * r_iv['mAP']:.2f}")


if __name__ == "__main__":
    main()
