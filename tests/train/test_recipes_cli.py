"""Shipped recipes carry the official values (spec §5); `reidkit train` is a thin CLI over train(cfg)."""
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reidkit.config import load_config
from reidkit.methods.finetune import FinetuneConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "finetune"


def test_every_recipe_loads():
    files = sorted(CONFIGS.glob("*.yaml"))
    assert len(files) >= 14
    for f in files:
        load_config(FinetuneConfig, f)


@pytest.mark.parametrize("data", ["market", "msmt17"])
@pytest.mark.parametrize("model,preset,size", [("vit_small", "vit_small", (256, 128)),
                                               ("vit_small_ics", "vit_small_ics", (256, 128)),
                                               ("vit_base_ics_384", "vit_base_ics_384", (384, 128))])
def test_paper_recipes_are_the_official_values(data, model, preset, size):
    c = load_config(FinetuneConfig, CONFIGS / f"{data}_{model}.yaml")
    assert c.model.preset == preset and c.data.size == size and c.model.drop_path_rate == 0.1
    assert (c.data.batch_size, c.data.num_instances) == (64, 4)
    assert (c.data.train_interpolation, c.data.test_interpolation) == ("bicubic", "bilinear")
    assert (c.data.hflip, c.data.pad, c.data.erasing) == (0.5, 10, 0.5)
    assert c.loss.id_loss == "softmax" and c.loss.label_smoothing == 0 and c.loss.triplet_margin is None
    assert not c.loss.triplet_normalize and c.loss.center_weight == 0
    s = c.solver
    assert (s.optimizer, s.lr, s.momentum, s.weight_decay, s.weight_decay_bias, s.bias_lr_factor) == \
        ("sgd", 4e-4, 0.9, 1e-4, 1e-4, 2.0)
    assert (s.epochs, s.warmup_epochs, s.warmup_factor, s.min_lr_factor, s.scheduler) == \
        (120, 20, 0.01, 0.002, "cosine")
    assert c.seed == 1234 and c.eval.every == 0 and not c.eval.flip
    if data == "msmt17":
        assert c.data.format == "msmt17" and c.data.options == {"combine_val": True}
    ddp = load_config(FinetuneConfig, CONFIGS / f"{data}_{model}_ddp.yaml")
    assert (ddp.data.batch_size, ddp.solver.lr) == (256, 3.2e-3)


def test_cli_print_config_and_overrides():
    from reidkit.cli.main import app

    r = CliRunner().invoke(app, ["train", str(CONFIGS / "synth_tiny_ics.yaml"), "solver.lr=5e-4", "--out", "x/y",
                                 "--print-config"])
    assert r.exit_code == 0, r.output
    assert "lr: 0.0005" in r.output and "output: x/y" in r.output


def test_cli_errors_are_one_clear_line(tmp_path):
    from reidkit.cli.main import app

    r = CliRunner().invoke(app, ["train", str(CONFIGS / "synth_tiny_ics.yaml"), "solver.typo=1",
                                 "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "unknown key" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["train", str(CONFIGS / "synth_tiny_ics.yaml"),
                                 f"data.root={tmp_path / 'missing'}", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "missing" in r.output and "Traceback" not in r.output
