"""The report of a user's own run folder and of two feature files, and the training-curves figure."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from reidkit.cli.main import app
from reidkit.report.plots import curve_panels, plot_training_curves, read_log

LOG = ("step,loss,id,triplet,acc,lr,images_per_s,mAP,R1\n"
       "1,5.0,4.0,1.0,0.10,0.0001,100,,\n2,4.0,3.1,0.9,0.35,0.0002,110,20.5,30.0\n"
       "3,3.5,2.8,0.7,0.60,0.0003,105,,\n4,3.0,2.2,0.8,0.85,0.0004,120,35.0,50.0\n")


def _images(page: Path) -> list[str]:
    return re.findall(r"<img src='([^']+)'", page.read_text())


def test_training_curves_figure_is_readable_and_in_one_unit(tmp_path):
    """Was 1980x330 with legends over the lines, accuracy a fraction next to retrieval in %."""
    (tmp_path / "log.csv").write_text(LOG)
    panels = dict(curve_panels(read_log(tmp_path / "log.csv")))
    acc = dict(panels["training accuracy (%)"])["acc"]
    np.testing.assert_allclose(acc, [10, 35, 60, 85])
    np.testing.assert_allclose(dict(panels["retrieval (%)"])["R1"][[1, 3]], [30, 50])
    with Image.open(plot_training_curves(tmp_path / "log.csv", tmp_path / "c.png")) as im:
        w, h = im.size
    assert 800 <= w <= 1400 and h >= 500 and w / h < 2.5, (w, h)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A finished run: config.yaml naming a small Market-like dataset, log.csv and a model file."""
    import torch

    from reidkit.models import build_model, save_model

    base = tmp_path_factory.mktemp("rr")
    data = base / "market"
    rng = np.random.default_rng(0)
    for folder, cams in (("bounding_box_train", (1,)), ("query", (1,)), ("bounding_box_test", (2, 3))):
        (data / folder).mkdir(parents=True)
        for pid in range(1, 5):
            colour = rng.integers(0, 256, 3)
            for cam in cams:
                arr = np.clip(colour + rng.integers(-30, 30, (64, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(data / folder / f"{pid:04d}_c{cam}s1_00000{cam}_01.jpg")
    run = base / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"format": "market1501", "root": str(data),
                                                               "size": [64, 32]}}))
    (run / "log.csv").write_text(LOG)
    torch.manual_seed(0)
    save_model(build_model("vit_micro", img_size=(64, 32)), run / "last.safetensors")
    return run


def test_report_command_rebuilds_a_runs_report(run_folder):
    r = CliRunner().invoke(app, ["report", str(run_folder), "--ranked", "2"])
    assert r.exit_code == 0, r.output
    page = run_folder / "report" / "index.html"
    text = page.read_text()
    assert "last.safetensors" in text and "mAP" in text
    imgs = _images(page)
    assert "cmc.png" in imgs and "training_curves.png" in imgs
    assert len([i for i in imgs if i.startswith("ranked_lists/")]) == 2
    assert all((page.parent / i).is_file() for i in imgs)


def test_run_report_survives_missing_pieces(tmp_path):
    from reidkit.report.run_report import write_run_report

    page = write_run_report(tmp_path)  # an empty folder: a page saying what is missing
    text = page.read_text()
    assert "config.yaml: missing" in text and "log.csv: missing" in text and "no model file" in text
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"data": {"format": "market1501", "root": "/nowhere"}}))
    (tmp_path / "log.csv").write_text(LOG)
    (tmp_path / "best.safetensors").write_bytes(b"not a model")
    text = write_run_report(tmp_path).read_text()
    assert "training_curves.png" in text and "feature extraction: skipped" in text
    r = CliRunner().invoke(app, ["report", str(tmp_path / "absent")])
    assert r.exit_code == 2 and "run folder not found" in r.output


def test_eval_report_for_two_feature_files(tmp_path, run_folder):
    from reidkit.evaluation.featurefile import FeatureSet, save_features

    data = Path(yaml.safe_load((run_folder / "config.yaml").read_text())["data"]["root"])
    q_paths = sorted(str(p) for p in (data / "query").iterdir())
    g_paths = sorted(str(p) for p in (data / "bounding_box_test").iterdir())
    pid = lambda p: int(Path(p).name[:4])  # noqa: E731
    cam = lambda p: int(Path(p).name[6]) - 1  # noqa: E731
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 8))
    mk = lambda ps: FeatureSet(np.stack([centres[pid(p)] + 0.1 * rng.normal(size=8) for p in ps]),  # noqa: E731
                               [pid(p) for p in ps], [cam(p) for p in ps], ps)
    save_features(mk(q_paths), tmp_path / "q.safetensors")
    save_features(mk(g_paths), tmp_path / "g.npz")
    r = CliRunner().invoke(app, ["eval", str(tmp_path / "q.safetensors"), str(tmp_path / "g.npz"),
                                 "--report", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    page = tmp_path / "rep" / "index.html"
    text = page.read_text()
    assert str((tmp_path / "q.safetensors").resolve()) in text and str((tmp_path / "g.npz").resolve()) in text
    assert "cmc.png" in _images(page) and any(i.startswith("ranked_lists/") for i in _images(page))
    assert "100.0" in text  # separable clusters: R1 100 %
