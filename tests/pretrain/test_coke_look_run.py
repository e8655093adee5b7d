"""CoKe and LOOK pre-training end to end on micro data: dispatch by `method:`, named errors before
training, export-backbone, loading into `reidkit train`'s model, SIGKILL + resume, DDP."""
import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from reidkit.cli.main import app
from reidkit.losses.coke import CoKeError
from reidkit.losses.look import LOOKError
from reidkit.methods.pretrain_coke import CoKeConfig, pretrain_coke
from reidkit.methods.pretrain_look import LOOKConfig, pretrain_look
from reidkit.models import build_model, load_model
from reidkit.models.checkpoints import load_weights
from reidkit.utils.checkpoint import load_state
from reidkit.utils.io import load_tensors

sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
from conftest import write_tiny_market  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return write_tiny_market(tmp_path_factory.mktemp("market"))


def recipe(method, root, out, **extra):
    """A micro recipe as YAML data: vit_micro at 64x32, 2 epochs, fp32 on CPU."""
    data = {"method": method, "output": str(out), "precision": "fp32", "device": "cpu", "log_every": 1,
            "data": {"root": str(root), "batch_size": 4, "num_workers": 0},
            "crops": {"global_size": [64, 32]}, "model": {"preset": "vit_micro", "drop_path_rate": 0.0},
            "head": {"hidden_dim": 32, "out_dim": 16}, "solver": {"epochs": 2, "warmup_epochs": 1, "lr": 0.002}}
    if method == "coke":
        data["coke"] = {"num_clusters": [3, 4], "min_size_ratio": 0.5}
    if method == "look":
        data["data"]["format"] = "market1501"
        data["look"] = {"k": 5}
    for key, value in extra.items():
        node = data
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return data


def write_recipe(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_coke_runs_by_method_and_exports_a_backbone_train_can_load(pool, tmp_path):
    r = _cli("pretrain", write_recipe(tmp_path / "coke.yaml", recipe("coke", pool, tmp_path / "run")))
    assert r.exit_code == 0, r.output
    state = load_state(tmp_path / "run" / "last.pt")
    assert state["method"] == "CoKe" and state["epoch"] == 2
    km = {k: v for k, v in state["loss"].items() if k.startswith("clusterings.0.")}
    assert (km["clusterings.0.labels"][:, 0] >= 0).all() and km["clusterings.0.centres"].shape == (3, 16)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert len(rows) == 6 and all(float(x["loss"]) > 0 for x in rows)
    # export-backbone (the command DINO uses) -> a model file `reidkit train model.weights=` loads strictly
    r = _cli("export-backbone", tmp_path / "run" / "last.pt", tmp_path / "b.safetensors")
    assert r.exit_code == 0, r.output
    exported = load_model(tmp_path / "b.safetensors")
    target = build_model("vit_micro", num_classes=8, img_size=(64, 32))
    report = load_weights(target, tmp_path / "b.safetensors", strict=True)
    assert not report.missing_backbone if hasattr(report, "missing_backbone") else True
    tensors, _ = load_tensors(tmp_path / "run" / "last.safetensors")
    for k, v in exported.backbone.state_dict().items():
        torch.testing.assert_close(v, state["model"][f"backbone.{k}"])
        torch.testing.assert_close(tensors[f"backbone.{k}"], v)


def test_look_and_ce_run_on_labelled_data(market, tmp_path):
    r = _cli("pretrain", write_recipe(tmp_path / "look.yaml", recipe("look", market, tmp_path / "look",
                                                                    **{"data.num_views": 2})))
    assert r.exit_code == 0, r.output
    state = load_state(tmp_path / "look" / "last.pt")
    assert state["loss"]["filled"].all()  # every training image has its memory slot
    r = _cli("pretrain", write_recipe(tmp_path / "ce.yaml", recipe("look", market, tmp_path / "ce", objective="ce")))
    assert r.exit_code == 0, r.output
    assert load_state(tmp_path / "ce" / "last.pt")["model"]["head.fc.weight"].shape[0] == 8


def test_bad_problems_fail_before_training(pool, market, tmp_path):
    cfg = CoKeConfig(**{})
    big = recipe("coke", pool, tmp_path / "a", **{"coke.num_clusters": [3, 50]})
    r = _cli("pretrain", write_recipe(tmp_path / "a.yaml", big))
    assert r.exit_code == 2 and "larger than the dataset (12 images)" in r.output, r.output
    assert not (tmp_path / "a").exists()  # nothing written: the error comes before the run starts
    r = _cli("pretrain", write_recipe(tmp_path / "b.yaml", recipe("coke", pool, tmp_path / "b",
                                                                 **{"coke.min_size_ratio": 1.5})))
    assert r.exit_code == 2 and "min_size_ratio" in r.output
    r = _cli("pretrain", write_recipe(tmp_path / "c.yaml", recipe("look", pool, tmp_path / "c",
                                                                 **{"data.format": "unlabelled"})))
    assert r.exit_code == 2 and "method: dino" in r.output and "method: coke" in r.output, r.output
    r = _cli("pretrain", write_recipe(tmp_path / "d.yaml", recipe("byol", pool, tmp_path / "d")))
    assert r.exit_code == 2 and "dino, coke, look" in r.output
    cfg.data.root, cfg.coke.num_clusters, cfg.precision = str(pool), [100], "fp32"
    with pytest.raises(CoKeError):
        pretrain_coke(cfg)
    lc = LOOKConfig(precision="fp32")
    lc.data.root, lc.look.k = str(market), 10_000
    with pytest.raises(LOOKError, match="look.k"):
        pretrain_look(lc)


def test_print_config_shows_the_method(pool, tmp_path):
    r = _cli("pretrain", write_recipe(tmp_path / "c.yaml", recipe("coke", pool, tmp_path / "c")), "--print-config")
    assert r.exit_code == 0 and "method: coke" in r.output and "min_size_ratio: 0.5" in r.output


def _env():
    env = dict(os.environ, REIDKIT_PROGRESS="0", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


def _rows(path):
    return list(csv.DictReader(open(path))) if path.is_file() else []


@pytest.mark.slow
@pytest.mark.parametrize("method", ["coke", "look"])
def test_resume_after_sigkill_is_bit_identical(method, pool, market, tmp_path):
    root = pool if method == "coke" else market
    extra = {"checkpoint_every": 1, "solver.epochs": 3}
    a = write_recipe(tmp_path / "a.yaml", recipe(method, root, tmp_path / "a", **extra))
    b = write_recipe(tmp_path / "b.yaml", recipe(method, root, tmp_path / "b", **extra))
    cmd = [sys.executable, "-m", "reidkit.cli.main", "pretrain"]
    run_a = subprocess.Popen(cmd + [str(a)], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_b = subprocess.Popen(cmd + [str(b)], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while len(_rows(tmp_path / "b" / "log.csv")) < 4 and run_b.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    run_b.send_signal(signal.SIGKILL)
    run_b.wait()
    assert run_b.returncode == -signal.SIGKILL, run_b.stdout.read()
    total = len(_rows(tmp_path / "a" / "log.csv"))  # noqa: F841 (run a is still going)
    resumed = subprocess.run(cmd + [str(b), "--resume"], env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    out_a, _ = run_a.communicate(timeout=600)
    assert run_a.returncode == 0, out_a
    sa, sb = load_state(tmp_path / "a" / "last.pt"), load_state(tmp_path / "b" / "last.pt")
    for part in ("model", "loss"):
        for k in sa[part]:
            assert torch.equal(sa[part][k], sb[part][k]), (part, k)
    ra, rb = _rows(tmp_path / "a" / "log.csv"), _rows(tmp_path / "b" / "log.csv")
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_coke_under_two_gloo_processes(pool, tmp_path):
    cfg = write_recipe(tmp_path / "ddp.yaml", recipe("coke", pool, tmp_path / "ddp", **{"data.batch_size": 2}))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "reidkit.cli.main", "pretrain", str(cfg)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = load_state(tmp_path / "ddp" / "last.pt")
    assert len(state["rng"]) == 2 and state["global_batch"] == 4
    assert (state["loss"]["clusterings.1.labels"][:, 0] >= 0).all()
