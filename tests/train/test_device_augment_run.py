"""data.device_augment in a fine-tuning run: the same weights as the per-sample path, fresh and resumed."""
import torch
from run_snapshots import snapshot_after

from reidkit.config import load_config
from reidkit.methods.finetune import FinetuneConfig, train
from reidkit.utils.checkpoint import load_state


def _cfg(root, out, *extra):
    return load_config(FinetuneConfig, None, [
        f"data.root={root}", "data.size=[64,32]", "model.preset=vit_micro", "data.batch_size=8",
        "data.num_workers=0", "eval.num_workers=0", "solver.epochs=2", "solver.warmup_epochs=1", "solver.lr=0.01",
        f"output={out}", *extra])


def _same_weights(a, b) -> bool:
    a, b = load_state(a / "last.pt")["net"], load_state(b / "last.pt")["net"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_device_augment_run_is_bit_identical_fresh_and_resumed(tiny_market, tmp_path, monkeypatch):
    monkeypatch.setenv("REIDKIT_PROGRESS", "0")
    ref = train(_cfg(tiny_market, tmp_path / "cpu"))
    snap = tmp_path / "snap"
    stop = snapshot_after(monkeypatch, 1, snap)   # a kill right after epoch 1
    dev = train(_cfg(tiny_market, tmp_path / "dev", "data.device_augment=true"))
    stop()
    assert _same_weights(ref, dev), "device augmentation changed the training"
    resumed = train(_cfg(tiny_market, snap, "data.device_augment=true"), resume=True)
    assert _same_weights(ref, resumed)
