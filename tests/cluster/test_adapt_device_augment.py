"""data.device_augment in an adapt (USL) run: the same weights as the per-sample path, fresh and resumed."""
import pytest
import torch
from run_snapshots import snapshot_after

from reidkit.config import load_config
from reidkit.data.synth import SynthConfig, generate
from reidkit.methods.adapt import AdaptConfig, adapt
from reidkit.utils.checkpoint import load_state

TINY = dict(domains=2, train_ids=8, test_ids=5, cameras=3, distractors=4, junk=2, pool_size=0, height=64, width=32)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(SynthConfig(**TINY), tmp_path_factory.mktemp("synth"), progress=False)


def _cfg(synth, out, *extra):
    return load_config(AdaptConfig, None, [
        f"data.root={synth.domains[1]}", "data.size=[64,32]", "data.batch_size=16", "data.num_instances=4",
        "data.num_workers=0", "model.preset=vit_micro", "model.drop_path_rate=0.1", "cluster.k1=8", "cluster.k2=3",
        "cluster.eps=0.7", "cluster.min_samples=2", "solver.epochs=2", "solver.iters=2", "solver.lr=0.01",
        "eval.enabled=false", "seed=7", f"output={out}", *extra])


def _same_weights(a, b) -> bool:
    a, b = load_state(a / "last.pt")["model"], load_state(b / "last.pt")["model"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(autouse=True)
def _single_thread(monkeypatch):
    monkeypatch.setenv("REIDKIT_PROGRESS", "0")
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # one reduction order: bit-identical comparisons on any machine
    yield
    torch.set_num_threads(before)


def test_adapt_device_augment_is_bit_identical_fresh_and_resumed(synth, tmp_path, monkeypatch):
    ref = adapt(_cfg(synth, tmp_path / "cpu"))
    snap = tmp_path / "snap"
    stop = snapshot_after(monkeypatch, 1, snap)   # a kill right after epoch 1
    dev = adapt(_cfg(synth, tmp_path / "dev", "data.device_augment=true"))
    stop()
    assert _same_weights(ref, dev), "device augmentation changed the adaptation"
    resumed = adapt(_cfg(synth, snap, "data.device_augment=true"), resume=True)
    assert _same_weights(ref, resumed)


@pytest.mark.slow
def test_adapt_device_augment_without_cache_matches(synth, tmp_path):
    """``data.cache=none``: workers decode with PIL per sample, then the same draws on the device."""
    ref = adapt(_cfg(synth, tmp_path / "cpu", "solver.epochs=1", "data.cache=none"))
    dev = adapt(_cfg(synth, tmp_path / "dev", "solver.epochs=1", "data.cache=none", "data.device_augment=true"))
    assert _same_weights(ref, dev)
