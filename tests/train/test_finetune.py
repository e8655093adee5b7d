"""End-to-end fine-tuning on a tiny folder: outputs, options, NaN guard, refusing to overwrite."""
import csv

import pytest
import torch

from reidkit.config import load_config
from reidkit.methods.finetune import FinetuneConfig, FinetuneError, train
from reidkit.utils.checkpoint import NonFiniteLossError, load_state


def tiny_cfg(root, out, *extra):
    return load_config(FinetuneConfig, None, [
        f"data.root={root}", "data.size=[64,32]", "model.preset=vit_micro", "data.batch_size=8",
        "data.num_workers=0", "eval.num_workers=0", "solver.epochs=3", "solver.warmup_epochs=1", "solver.lr=0.01",
        f"output={out}", *extra])


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_train_writes_a_complete_run_folder(tiny_market, tmp_path):
    from reidkit.models import load_model

    out = train(tiny_cfg(tiny_market, tmp_path / "run", "eval.every=2"))
    for name in ("config.yaml", "log.csv", "last.pt", "last.safetensors", "best.safetensors", "summary.json"):
        assert (out / name).is_file(), name
    rows = _rows(out / "log.csv")
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert rows[1]["mAP"] and rows[2]["mAP"] and not rows[0]["mAP"]  # every 2 epochs and at the end
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    # the schedule: epoch 1 trains at warmup_factor x lr
    assert float(rows[0]["lr"]) == pytest.approx(0.01 * 0.01)
    state = load_state(out / "last.pt")
    assert state["epoch"] == 3
    model = load_model(out / "last.safetensors").eval()
    assert model(torch.zeros(2, 3, 64, 32)).shape == (2, 64)
    resolved = load_config(FinetuneConfig, out / "config.yaml")
    assert resolved.model.preset == "vit_micro" and resolved.data.size == (64, 32)
    with pytest.raises(FinetuneError, match="already holds a run"):
        train(tiny_cfg(tiny_market, tmp_path / "run"))


def test_options_margin_center_adamw_layer_decay_ema_bf16(tiny_market, tmp_path, capsys):
    from reidkit.models import build_model, save_model

    init = save_model(build_model("vit_micro", num_classes=5, img_size=(64, 32)), tmp_path / "init.safetensors")
    out = train(tiny_cfg(tiny_market, tmp_path / "opts", "solver.epochs=1", "loss.id_loss=arcface",
                         f"model.weights={init}",
                         "loss.label_smoothing=0.1", "loss.center_weight=0.0005", "loss.triplet_margin=0.3",
                         "solver.optimizer=adamw", "solver.lr=1e-3", "solver.layer_decay=0.75", "solver.ema=0.9",
                         "precision=bf16", "solver.grad_clip=1.0", "solver.scheduler=cosine_iter",
                         "data.cache=memory"))
    row = _rows(out / "log.csv")[0]
    assert float(row["center"]) > 0 and float(row["mAP"]) >= 0
    assert "ema" in load_state(out / "last.pt")
    assert "init.safetensors" in "".join(capsys.readouterr().out.split())  # the load report is shown


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_market, tmp_path, monkeypatch):
    from reidkit.losses import triplet

    calls = {"n": 0}
    real = triplet.TripletLoss.forward

    def poisoned(self, feat, pids):
        calls["n"] += 1
        loss = real(self, feat, pids)
        return loss * float("nan") if calls["n"] > per_epoch else loss

    from reidkit.data.samplers import PKSampler
    from reidkit.data.datasets import load_dataset
    per_epoch = len(PKSampler([r.pid for r in load_dataset("market1501", tiny_market).train], 2, 4, seed=1234))
    monkeypatch.setattr(triplet.TripletLoss, "forward", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, iteration 1.*last good checkpoint"):
        train(tiny_cfg(tiny_market, out, "eval.enabled=false"))
    assert load_state(out / "last.pt")["epoch"] == 1
    assert (out / "last.safetensors").is_file()


def test_bad_setups_are_clear_errors(tiny_market, tmp_path):
    with pytest.raises(FinetuneError, match="data.root"):
        train(load_config(FinetuneConfig, None, [f"output={tmp_path / 'x'}"]))
    with pytest.raises(FinetuneError, match="multiple of num_instances"):
        train(tiny_cfg(tiny_market, tmp_path / "y", "data.batch_size=6"))
    with pytest.raises(FinetuneError, match="fp16 needs a CUDA GPU"):
        train(tiny_cfg(tiny_market, tmp_path / "z", "precision=fp16", "device=cpu"))
    with pytest.raises(FinetuneError, match="layer_decay"):
        train(tiny_cfg(tiny_market, tmp_path / "w", "solver.layer_decay=0.5"))
