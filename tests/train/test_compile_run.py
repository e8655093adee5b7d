"""compile=true in a fine-tuning run on CPU (inductor; gcc builds the kernels): it trains, and a run killed
after epoch 1 resumes to the uninterrupted run's weights."""
import pytest
import torch
from run_snapshots import snapshot_after

from reidkit.config import load_config
from reidkit.methods.finetune import FinetuneConfig, train
from reidkit.utils.checkpoint import load_state


def _cfg(root, out, *extra):
    return load_config(FinetuneConfig, None, [
        f"data.root={root}", "data.size=[32,16]", "model.preset=vit_micro", "model.patch_size=8",
        "data.batch_size=8", "data.num_workers=0", "eval.num_workers=0", "solver.epochs=2", "solver.warmup_epochs=1",
        "solver.lr=0.01", "data.device_augment=true", "eval.enabled=false",
        f"output={out}", *extra])


def _weights(run):
    return load_state(run / "last.pt")["net"]


@pytest.mark.slow
def test_compiled_run_trains_and_resumes(tiny_market, tmp_path, monkeypatch):
    pytest.importorskip("torch._inductor")
    monkeypatch.setenv("REIDKIT_PROGRESS", "0")
    monkeypatch.setenv("TORCHINDUCTOR_COMPILE_THREADS", "1")   # gentle on a shared machine
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager = train(_cfg(tiny_market, tmp_path / "eager"))
    snap = tmp_path / "snap"
    stop = snapshot_after(monkeypatch, 1, snap)   # a kill right after epoch 1
    compiled = train(_cfg(tiny_market, tmp_path / "compiled", "compile=true"))
    stop()
    assert counters["stats"]["unique_graphs"] >= 1, "compile=true did not compile anything"
    resumed = train(_cfg(tiny_market, snap, "compile=true"), resume=True)
    e, c, r = _weights(eager), _weights(compiled), _weights(resumed)
    assert e.keys() == c.keys() == r.keys()
    # compiled kernels round differently from eager ones, not by much; a resumed compiled run is the same run
    assert all(torch.allclose(e[k].float(), c[k].float(), atol=1e-3, rtol=1e-3) for k in e)
    assert all(torch.equal(c[k], r[k]) for k in c)
