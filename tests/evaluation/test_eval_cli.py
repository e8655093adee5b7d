"""reidkit eval: JSON contract, protocol choice, re-ranking options, clear errors."""
import json

import numpy as np
from typer.testing import CliRunner

from reidkit.cli.main import app
from reidkit.evaluation.featurefile import FeatureSet
from reidkit.evaluation.metrics import evaluate

runner = CliRunner()


def write(tmp_path, cams=True):
    rng = np.random.default_rng(0)
    pid = rng.integers(0, 15, 200)
    cam = rng.integers(0, 3, 200) if cams else np.full(200, -1)
    x = (rng.normal(size=(15, 12))[pid] + rng.normal(size=(200, 12))).astype(np.float32)
    q, g = FeatureSet(x[:40], pid[:40], cam[:40]), FeatureSet(x[40:], pid[40:], cam[40:])
    return q, g, q.save(tmp_path / "q.npz"), g.save(tmp_path / "g.safetensors")


def run_json(*args):
    res = runner.invoke(app, ["eval", *map(str, args), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # exactly one JSON object: anything else on stdout fails here


def test_json_matches_api(tmp_path):
    q, g, qp, gp = write(tmp_path)
    out = run_json(qp, gp, "--metric", "euclidean", "--max-rank", "10")
    ref = evaluate(query=q, gallery=g, metric="euclidean", max_rank=10)
    assert out["protocol"] == "market" and out["num_valid_queries"] == ref["num_valid_queries"]
    assert out["mAP"] == ref["mAP"] and out["mINP"] == ref["mINP"]
    assert out["cmc"] == [float(c) for c in ref["cmc"]] and len(out["cmc"]) == 10


def test_rerank_options_and_tpr(tmp_path):
    _, _, qp, gp = write(tmp_path)
    base = run_json(qp, gp)
    for args in (["--rerank", "kreciprocal", "--k1", "10", "--k2", "3", "--lambda", "0.2"],
                 ["--rerank", "gcr", "--no-pvg", "--rounds", "2"],
                 ["--rerank", "qe", "--qe-k", "3", "--qe-alpha", "0"]):
        out = run_json(qp, gp, *args, "--tpr")
        assert out["rerank"] == args[1] and 0 < out["mAP"] <= 1 and out["mAP"] != base["mAP"]
        assert set(out["tpr@fpr"]) == {"0.0001", "0.001", "0.01"}
    assert run_json(qp, gp, "--rerank", "kreciprocal", "--k1", "10")["rerank_params"] == {"k1": 10}


def test_table_and_no_camera_auto(tmp_path):
    _, _, qp, gp = write(tmp_path, cams=False)
    res = runner.invoke(app, ["eval", str(qp), str(gp)])
    assert res.exit_code == 0, res.output
    assert "mAP" in res.output and "no-camera" in res.output
    res = runner.invoke(app, ["eval", str(qp), str(gp), "--protocol", "market"])
    assert res.exit_code == 2 and "no-camera" in res.output


def test_errors_are_one_line(tmp_path):
    _, _, qp, _ = write(tmp_path)
    res = runner.invoke(app, ["eval", str(qp), str(tmp_path / "nope.npz")])
    assert res.exit_code == 2 and "nope.npz" in res.output and "Traceback" not in res.output
    other = FeatureSet(np.zeros((3, 5), np.float32), [1, 2, 3], [0, 0, 0]).save(tmp_path / "o.npz")
    res = runner.invoke(app, ["eval", str(qp), str(other)])
    assert res.exit_code == 2 and "holds 12-d features but" in res.output and "o.npz holds 5-d" in res.output
