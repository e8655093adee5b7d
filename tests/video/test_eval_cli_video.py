"""``reidkit eval`` on tracklet feature files dispatches to the video protocols (same numbers as
``evaluate_video`` / ``reidkit eval-video``), with ``--rerank gcr`` on tracklet profiles."""
from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from reidkit.cli.main import app
from reidkit.evaluation.featurefile import FeatureSet, load_features, save_features
from reidkit.evaluation.video import evaluate_video


def _files(tmp_path, seed=3, n_q=14, n_g=40, d=8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, d))
    gp, gc = rng.integers(0, 6, n_g), rng.integers(0, 3, n_g)
    qp, qc = rng.integers(1, 8, n_q), rng.integers(0, 3, n_q)
    g = centres[gp] + rng.normal(scale=1.0, size=(n_g, d))
    q = centres[qp] + rng.normal(scale=1.0, size=(n_q, d))
    for name, f, p, c in (("q.npz", q, qp, qc), ("g.npz", g, gp, gc)):
        save_features(FeatureSet(f, p, c, [f"t{i}" for i in range(len(f))], {"kind": "tracklets"}), tmp_path / name)
    return tmp_path / "q.npz", tmp_path / "g.npz"


def _eval(*args):
    r = CliRunner().invoke(app, ["eval", *map(str, args), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_eval_on_tracklet_files_uses_the_video_protocol(tmp_path):
    qpath, gpath = _files(tmp_path)
    q, g = load_features(qpath), load_features(gpath)
    out = _eval(qpath, gpath, "--max-rank", 5)
    want = evaluate_video(q, g, metric="cosine", max_rank=5)
    assert out["mode"] == "v2v" and out["rerank"] == "none"
    assert out["mAP"] == want["mAP"] and np.allclose(out["cmc"], want["cmc"])
    assert out["num_queries_absent"] == want["num_queries_absent"] > 0
    out = _eval(qpath, gpath, "--max-rank", 5, "--rerank", "gcr", "--rounds", "1", "--k1", "5")
    want = evaluate_video(q, g, rerank="gcr", gcr_overrides={"rounds": 1, "k1": 5}, metric="cosine", max_rank=5)
    assert out["rerank"] == "gcr" and out["mAP"] == want["mAP"] and np.allclose(out["cmc"], want["cmc"])
    r = CliRunner().invoke(app, ["eval", str(qpath), str(gpath), "--rerank", "kreciprocal"])
    assert r.exit_code == 2 and "none or gcr" in r.output
