"""Fingerprints of the three training methods: final weights and log rows of a short CPU run,
fresh and resumed, must stay bit-identical across refactors of the training engine.

The expected hashes were recorded from the code before the engine was extracted (commit f118f14 +
these tests). A run is "killed" by copying its folder as it stands right after an epoch's log row
was written (what a SIGKILL at that moment leaves on disk), and the copy is resumed.

If a change of behaviour is intended (a new recipe default, a fixed bug), re-record with
``REIDKIT_PRINT_FINGERPRINTS=1 pytest tests/engine/test_fingerprints.py -s`` and say why in the commit.
"""
import csv
import hashlib
import os
from pathlib import Path

import pytest
import torch
from run_snapshots import snapshot_after

from reidkit.config import load_config
from reidkit.data.synth import SynthConfig, generate

# columns that measure time, not results
TIMING = {"images_per_s", "data_wait", "epoch_s", "extract_s", "cluster_s", "train_s"}

EXPECTED = {
    "finetune": ("6578479e3dbbceea", "64ec0a2d1021d09c"),
    "pretrain": ("b45448e6b3f710bc", "78033d85347915e1"),
    "adapt": ("ceb4e677f09599df", "b24d1a0c8aa55c99"),
}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    cfg = SynthConfig(domains=2, train_ids=8, test_ids=5, cameras=3, distractors=4, junk=2, pool_size=14,
                      height=64, width=32)
    return generate(cfg, tmp_path_factory.mktemp("synth"), progress=False)


@pytest.fixture(autouse=True)
def _quiet_single_thread(monkeypatch):
    """One intra-op thread: reductions then run in one order, so the hashes do not depend on the machine's
    core count."""
    monkeypatch.setenv("REIDKIT_PROGRESS", "0")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def weights_hash(path: Path) -> str:
    from safetensors.torch import load_file

    tensors = load_file(path)
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def log_hash(path: Path) -> str:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    h = hashlib.sha256()
    for r in rows:
        h.update(repr(sorted((k, v) for k, v in r.items() if k not in TIMING and v != "")).encode())
    return h.hexdigest()[:16]


def fingerprint(run: Path) -> tuple[str, str]:
    return weights_hash(run / "last.safetensors"), log_hash(run / "log.csv")


def _check(name: str, got: tuple[str, str]) -> None:
    if os.environ.get("REIDKIT_PRINT_FINGERPRINTS"):
        print(f"\nFINGERPRINT {name}: {got}")
    assert got == EXPECTED[name], f"{name}: {got} != recorded {EXPECTED[name]}"


def _fresh_then_resumed(name: str, make_cfg, run, tmp_path, monkeypatch, step: int) -> None:
    """Run ``make_cfg(out)`` fresh (snapshotting its folder after log row ``step``), check the fingerprint,
    resume the snapshot to the end, check it again."""
    snap = tmp_path / "snap"
    _snapshot_at(monkeypatch, step, snap)
    _check(name, fingerprint(run(make_cfg(tmp_path / "run"))))
    monkeypatch.undo()
    monkeypatch.setenv("REIDKIT_PROGRESS", "0")
    run(make_cfg(snap), resume=True)
    _check(name, fingerprint(snap))


def _snapshot_at(monkeypatch, step: int, snap: Path) -> None:
    """Copy the run folder right after the log row of ``step`` is written (a kill at that moment)."""
    snapshot_after(monkeypatch, step, snap)


# ---------------------------------------------------------------------------------------------
# fine-tune: 3 epochs of vit_micro, evaluated at epochs 2 and 3


def _finetune_cfg(synth, out):
    from reidkit.methods.finetune import FinetuneConfig

    return load_config(FinetuneConfig, None, [
        f"data.root={synth.domains[0]}", "data.size=[64,32]", "data.batch_size=8", "data.num_workers=0",
        "data.cache=memory", "model.preset=vit_micro", "solver.epochs=3", "solver.warmup_epochs=1",
        "solver.lr=0.01", "eval.every=2", "eval.num_workers=0", f"output={out}"])


def _finetune(cfg, resume=False):
    from reidkit.methods.finetune import train

    return train(cfg, resume=resume)


def test_finetune_fresh_and_resumed(synth, tmp_path, monkeypatch):
    _fresh_then_resumed("finetune", lambda out: _finetune_cfg(synth, out), _finetune, tmp_path, monkeypatch, 2)


# ---------------------------------------------------------------------------------------------
# DINO pre-training: 2 epochs of vit_micro on 14 pool images (3 iterations of 4 per epoch)


def _pretrain_cfg(synth, out):
    from reidkit.methods.pretrain_dino import PretrainConfig

    cfg = PretrainConfig(output=str(out), precision="fp32", device="cpu", log_every=1)
    cfg.data.root, cfg.data.batch_size, cfg.data.num_workers = str(synth.pool), 4, 0
    cfg.crops.global_size, cfg.crops.local_size, cfg.crops.local_crops_number = (64, 32), (32, 16), 2
    cfg.model.preset = "vit_micro"
    cfg.head.out_dim, cfg.head.hidden_dim, cfg.head.bottleneck_dim = 32, 32, 16
    cfg.solver.epochs, cfg.solver.warmup_epochs = 2, 1
    return cfg


def _pretrain(cfg, resume=False):
    from reidkit.methods.pretrain_dino import pretrain

    return pretrain(cfg, resume=resume)


def test_pretrain_fresh_and_resumed_from_its_epoch_checkpoint(synth, tmp_path, monkeypatch):
    """Issue 16 item 11: resuming from the run's own end-of-epoch-1 state gives the uninterrupted weights
    (snapshot at the first row of epoch 2: last.pt then holds the end of epoch 1)."""
    _fresh_then_resumed("pretrain", lambda out: _pretrain_cfg(synth, out), _pretrain, tmp_path, monkeypatch, 4)


# ---------------------------------------------------------------------------------------------
# adapt (USL): 3 epochs of 2 iterations on the second synthetic domain, evaluated every epoch


def _adapt_cfg(synth, out):
    from reidkit.methods.adapt import AdaptConfig

    return load_config(AdaptConfig, None, [
        f"data.root={synth.domains[1]}", "data.size=[64,32]", "data.batch_size=16", "data.num_instances=4",
        "data.num_workers=0", "model.preset=vit_micro", "model.drop_path_rate=0.1", "cluster.k1=8",
        "cluster.k2=3", "cluster.eps=0.7", "cluster.min_samples=2", "solver.epochs=3", "solver.iters=2",
        "solver.lr=0.01", "eval.every=1", "seed=7", f"output={out}"])


def _adapt(cfg, resume=False):
    from reidkit.methods.adapt import adapt

    return adapt(cfg, resume=resume)


def test_adapt_fresh_and_resumed(synth, tmp_path, monkeypatch):
    _fresh_then_resumed("adapt", lambda out: _adapt_cfg(synth, out), _adapt, tmp_path, monkeypatch, 2)
