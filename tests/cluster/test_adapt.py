"""A tiny USL run end to end, resume after a 'kill', UDA from a source model, and config errors."""
import csv
import json

import numpy as np
import pytest
import torch

from reidkit.config import load_config
from reidkit.data.synth import SynthConfig, generate
from reidkit.methods.adapt import AdaptConfig, AdaptError, adapt

TINY = dict(domains=2, train_ids=8, test_ids=5, cameras=3, distractors=4, junk=2, pool_size=0,
            height=64, width=32)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(SynthConfig(**TINY), tmp_path_factory.mktemp("synth"), progress=False)


def _cfg(synth, out, *extra):
    overrides = [f"data.root={synth.domains[1]}", "data.size=[64,32]", "data.batch_size=16",
                 "data.num_instances=4", "data.num_workers=0", "model.preset=vit_micro", "model.drop_path_rate=0",
                 "cluster.k1=8", "cluster.k2=3", "cluster.eps=0.7", "cluster.min_samples=2",
                 "solver.epochs=2", "solver.iters=2", "solver.lr=0.01", "eval.every=1", "seed=7",
                 f"output={out}", *extra]
    return load_config(AdaptConfig, None, overrides)


@pytest.mark.slow
def test_usl_run_logs_and_resumes(synth, tmp_path, monkeypatch):
    monkeypatch.setenv("REIDKIT_PROGRESS", "0")
    full = adapt(_cfg(synth, tmp_path / "full"))
    rows = list(csv.DictReader(open(full / "log.csv")))
    assert len(rows) == 2
    for key in ("clusters", "outliers", "memory_size", "pl_ari", "pl_nmi", "pl_pair_precision", "pl_pair_recall",
                "pl_true_ids", "loss", "mAP"):
        assert key in rows[0], key
    assert int(float(rows[0]["memory_size"])) == int(float(rows[0]["clusters"])) >= 1
    summary = json.loads((full / "summary.json").read_text())
    assert "initial" in summary and summary["final"]["mAP"] >= 0
    for name in ("config.yaml", "last.pt", "last.safetensors", "best.safetensors"):
        assert (full / name).is_file()

    # "kill" after epoch 1 (a 1-epoch run), then resume to 2 epochs: same weights as the full run
    part = _cfg(synth, tmp_path / "part", "solver.epochs=1", "eval.enabled=false")
    adapt(part)
    with pytest.raises(AdaptError, match="resume"):
        adapt(part)
    resumed = adapt(_cfg(synth, tmp_path / "part", "eval.enabled=false"), resume=True)
    from safetensors.torch import load_file
    a, b = load_file(full / "last.safetensors"), load_file(resumed / "last.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert len(list(csv.DictReader(open(resumed / "log.csv")))) == 2


def test_uda_from_source_model_and_dash(synth, tmp_path, monkeypatch):
    monkeypatch.setenv("REIDKIT_PROGRESS", "0")
    from reidkit.models import build_model, save_model
    src = build_model("vit_micro", num_classes=8, img_size=(64, 32))
    save_model(src, tmp_path / "source.safetensors")
    cfg = _cfg(synth, tmp_path / "uda", "mode=uda", f"source.model={tmp_path / 'source.safetensors'}",
               "cluster.filter=dash", "solver.epochs=1", "eval.enabled=false")
    run = adapt(cfg)
    row = next(csv.DictReader(open(run / "log.csv")))
    assert 0.0 < float(row["dash_kept"]) <= 1.0 and float(row["dash_threshold"]) > 0
    # the backbone came from the source model
    from reidkit.models import load_model
    start = load_model(tmp_path / "source.safetensors")
    assert run.joinpath("summary.json").is_file() and start.feat_dim == 64


def test_config_errors(synth, tmp_path):
    with pytest.raises(AdaptError, match="data.root"):
        adapt(load_config(AdaptConfig, None, [f"output={tmp_path}/x"]))
    with pytest.raises(AdaptError, match="source"):
        adapt(_cfg(synth, tmp_path / "y", "mode=uda"))
    with pytest.raises(AdaptError, match="multiple"):
        adapt(_cfg(synth, tmp_path / "z", "data.batch_size=10"))


def test_cli_prints_config_and_reports_errors(tmp_path):
    from typer.testing import CliRunner

    from reidkit.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["adapt", "configs/adapt/msmt17_usl_vit_small_ics.yaml", "cluster.eps=0.65",
                            "--print-config"])
    assert r.exit_code == 0, r.output
    assert "eps: 0.65" in r.output and "format: msmt17" in r.output and "k1: 30" in r.output
    r = runner.invoke(app, ["adapt", "configs/adapt/market_usl_vit_small_ics.yaml", "cluster.eps=2",
                            f"--out={tmp_path / 'r'}"])
    assert r.exit_code == 2 and "eps" in r.output
