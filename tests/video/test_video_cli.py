"""The video commands end to end on `reidkit synth --tracklets`: distill -> extract-video -> eval-video."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from reidkit.cli.main import app
from reidkit.evaluation.featurefile import load_features
from reidkit.evaluation.video import image_to_video, video_to_video

runner = CliRunner()


def invoke(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("vs") / "synth"
    invoke("synth", root, "--tracklets", "--ids", 6, "--test-ids", 5, "--cameras", 2, "--distractors", 2,
           "--min-frames", 3, "--max-frames", 5)
    return root


def test_distill_extract_eval(synth, tmp_path):
    run = tmp_path / "run"
    invoke("distill", "configs/video/synth_tiny_tcl.yaml", f"data.root={synth}", "data.size=[64,32]",
           "data.batch_size=4", "data.num_workers=0", "teacher.preset=vit_micro", "student.preset=vit_micro",
           "solver.epochs=1", "eval.enabled=false", "--out", run)
    assert (run / "student.safetensors").is_file() and (run / "teacher.safetensors").is_file()
    # teacher (video model) -> tracklets; student (image model) -> tracklets + frames
    invoke("extract-video", "-m", run / "teacher.safetensors", "--data", synth, "--split", "query",
           "-o", tmp_path / "tq.npz", "--workers", 0)
    invoke("extract-video", "-m", run / "teacher.safetensors", "--data", synth, "--split", "gallery",
           "-o", tmp_path / "tg.safetensors", "--workers", 0)
    invoke("extract-video", "-m", run / "student.safetensors", "--data", synth, "--split", "query",
           "-o", tmp_path / "sq.npz", "--frames", tmp_path / "sqf.npz", "--workers", 0)
    invoke("extract-video", "-m", run / "student.safetensors", "--data", synth, "--split", "gallery",
           "-o", tmp_path / "sg.npz", "--workers", 0, "--sampler", "evenly", "--seq-len", 2)
    v2v = json.loads(invoke("eval-video", tmp_path / "tq.npz", tmp_path / "tg.safetensors", "--json").stdout)
    assert v2v["mode"] == "v2v"
    assert v2v["mAP"] == pytest.approx(video_to_video(load_features(tmp_path / "tq.npz"),
                                                      load_features(tmp_path / "tg.safetensors"))["mAP"])
    i2v = json.loads(invoke("eval-video", tmp_path / "sqf.npz", tmp_path / "sg.npz", "--json").stdout)
    assert i2v["mode"] == "i2v" and i2v["num_valid_queries"] == 5
    assert i2v["mAP"] == pytest.approx(image_to_video(load_features(tmp_path / "sqf.npz"),
                                                      load_features(tmp_path / "sg.npz"))["mAP"])
    g = json.loads(invoke("eval-video", tmp_path / "tq.npz", tmp_path / "tg.safetensors", "--rerank", "gcr",
                          "--json").stdout)
    assert 0 <= g["mAP"] <= 1
    table = invoke("eval-video", tmp_path / "tq.npz", tmp_path / "tg.safetensors").output
    assert "v2v" in table and "MARS rules" in table


def test_clear_errors(synth, tmp_path):
    res = runner.invoke(app, ["extract-video", "-m", str(tmp_path / "none.safetensors"), "--data", str(synth),
                              "-o", str(tmp_path / "x.npz")])
    assert res.exit_code == 2 and "model file not found" in res.output
    from reidkit.evaluation.featurefile import FeatureSet
    FeatureSet(np.eye(3, dtype=np.float32), [1, 2, 3], [0, 0, 1]).save(tmp_path / "plain.npz")
    res = runner.invoke(app, ["eval-video", str(tmp_path / "plain.npz"), str(tmp_path / "plain.npz")])
    assert res.exit_code == 2 and "cannot tell the video protocol" in res.output
