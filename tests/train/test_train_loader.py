"""The training loader: same pixels whatever the worker count or cache, PK structure kept."""
import pytest
import torch

from reidkit.data.datasets import load_dataset
from reidkit.data.train_loader import build_train_loader
from reidkit.data.transforms import build_train_transform
from reidkit.methods.ema import ModelEMA


def _batches(records, workers, cache, epoch=0):
    tf = build_train_transform((32, 16))
    loader, sampler, _ = build_train_loader(records, tf, batch_size=8, num_instances=4, seed=3, size=(32, 16),
                                            num_workers=workers, cache=cache, progress=False)
    sampler.set_epoch(epoch)
    return [(x.clone(), p.clone()) for x, p, _, _ in loader]


def test_same_batches_with_any_worker_count_and_with_or_without_cache(tiny_market):
    records = load_dataset("market1501", tiny_market).train
    ref = _batches(records, 0, "none")
    assert len(ref) > 1
    for workers, cache in ((2, "none"), (0, "memory"), (1, "memory")):
        got = _batches(records, workers, cache)
        assert len(got) == len(ref)
        for (a, pa), (b, pb) in zip(ref, got):
            assert torch.equal(pa, pb)
            assert torch.equal(a, b), (workers, cache)
    assert not all(torch.equal(a, b) for (a, _), (b, _) in zip(ref, _batches(records, 0, "none", epoch=1)))


def test_loader_does_not_touch_the_global_rng(tiny_market):
    records = load_dataset("market1501", tiny_market).train
    torch.manual_seed(0)
    before = torch.get_rng_state()
    _batches(records, 0, "none")
    _batches(records, 1, "memory")
    assert torch.equal(before, torch.get_rng_state())


def test_batch_size_must_be_a_multiple_of_k(tiny_market):
    records = load_dataset("market1501", tiny_market).train
    with pytest.raises(ValueError, match="multiple"):
        build_train_loader(records, build_train_transform((32, 16)), batch_size=6, num_instances=4, seed=0,
                           size=(32, 16))


def test_ema_follows_the_formula():
    net = torch.nn.Linear(3, 2)
    ema = ModelEMA(net, decay=0.9, warmup=False)
    w0 = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    assert torch.allclose(ema.module.weight, 0.9 * w0 + 0.1 * (w0 + 1.0))
    warm = ModelEMA(net, decay=0.999)
    assert warm.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with pytest.raises(ValueError):
        ModelEMA(net, decay=1.0)


def test_per_sample_seeding_touches_only_the_cpu_generator(monkeypatch):
    """torch.manual_seed also (lazily) seeds CUDA/XPU/MPS: 1-20 ms a call on a CUDA build, and it would
    reseed the CUDA RNG, which fork_rng(devices=[]) leaves changed. The draws are those of torch.manual_seed."""
    from torch.utils.data import Dataset

    from reidkit.data.train_loader import SeededSamples

    class Draw(Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return torch.rand(3), torch.randint(0, 1000, (2,))

    want = []
    for seed in (0, 7, 2**40 + 5):
        torch.manual_seed(seed)
        want.append((torch.rand(3), torch.randint(0, 1000, (2,))))
    calls = []
    monkeypatch.setattr(torch, "manual_seed", lambda s: calls.append(s))
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda s: calls.append(s))
    torch.default_generator.manual_seed(123)
    before = torch.get_rng_state()
    got = [SeededSamples(Draw())[(1, seed)] for seed in (0, 7, 2**40 + 5)]
    assert calls == []
    assert torch.equal(torch.get_rng_state(), before)
    for (a, b), (x, y) in zip(got, want):
        assert torch.equal(a, x) and torch.equal(b, y)
