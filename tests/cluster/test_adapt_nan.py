"""A NaN loss in USL/UDA adaptation stops the run with a clear message and keeps the last good state."""
import pytest

from reidkit.config import load_config
from reidkit.data.synth import SynthConfig, generate
from reidkit.losses import cluster_memory
from reidkit.methods.adapt import AdaptConfig, adapt
from reidkit.utils.checkpoint import NonFiniteLossError, load_state


def test_nan_loss_stops_adaptation_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("REIDKIT_PROGRESS", "0")
    synth = generate(SynthConfig(domains=1, train_ids=8, test_ids=5, cameras=3, distractors=4, junk=2, pool_size=0,
                                 height=64, width=32), tmp_path / "synth", progress=False)
    iters = 2
    calls = {"n": 0}
    real = cluster_memory.ClusterMemory.forward

    def poisoned(self, feats, targets):
        calls["n"] += 1
        loss = real(self, feats, targets)
        return loss * float("nan") if calls["n"] > iters else loss  # epoch 1 is clean, epoch 2 is not

    monkeypatch.setattr(cluster_memory.ClusterMemory, "forward", poisoned)
    out = tmp_path / "usl"
    cfg = load_config(AdaptConfig, None, [
        f"data.root={synth.domains[0]}", "data.size=[64,32]", "data.batch_size=16", "data.num_instances=4",
        "data.num_workers=0", "model.preset=vit_micro", "model.drop_path_rate=0", "cluster.k1=8", "cluster.k2=3",
        "cluster.eps=0.7", "cluster.min_samples=2", "solver.epochs=3", f"solver.iters={iters}",
        "solver.lr=0.01", "eval.enabled=false", "seed=7", f"output={out}"])
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, iteration 1.*last good checkpoint .*is kept"):
        adapt(cfg)
    assert calls["n"] == iters + 1  # it stopped at the first bad loss, not later
    assert load_state(out / "last.pt")["epoch"] == 1
    assert (out / "last.safetensors").is_file()
