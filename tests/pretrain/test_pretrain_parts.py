"""Teacher EMA, per-parameter clipping, weight-decay groups, the multi-view model, the epoch sampler."""
import torch
from torch import nn

from reidkit.data.samplers import ShardedEpochSampler
from reidkit.methods.optim import clip_gradients, dino_param_groups
from reidkit.methods.pretrain_dino import DINOModel, cancel_last_layer_gradients, ema_update
from reidkit.models import build_model
from reidkit.models.dino_head import DINOHead


def test_ema_update_formula():
    torch.manual_seed(0)
    s, t = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.detach().clone() for p in t.parameters()]
    ema_update(t, s, 0.9)
    for old, new, st in zip(before, t.parameters(), s.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * st.detach())
    ema_update(t, s, 1.0)  # momentum 1 (the end of the schedule): the teacher is frozen
    ema_update(t, s, 0.0)  # momentum 0: a copy of the student
    for new, st in zip(t.parameters(), s.parameters()):
        torch.testing.assert_close(new, st)


def test_per_parameter_clipping():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.3, 0.4])
    m = nn.Module()
    m.a, m.b = a, b
    clip_gradients(m, 1.0)
    torch.testing.assert_close(a.grad, torch.tensor([0.6, 0.8]), atol=1e-6, rtol=1e-6)  # norm 5 -> 1
    torch.testing.assert_close(b.grad, torch.tensor([0.3, 0.4]))  # norm 0.5 untouched


def test_weight_decay_only_on_matrices_and_frozen_g_excluded():
    head = DINOHead(8, out_dim=10, hidden_dim=16, bottleneck_dim=6)
    decay, no_decay = dino_param_groups(head)
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0
    assert not any(p is head.last_layer.weight_g for g in (decay, no_decay) for p in g["params"])
    head.last_layer.weight_v.grad = torch.ones_like(head.last_layer.weight_v)
    cancel_last_layer_gradients(head)
    assert head.last_layer.weight_v.grad is None


def test_multiview_model_batches_views_by_size():
    torch.manual_seed(0)
    backbone = build_model("vit_micro").backbone.eval()
    model = DINOModel(backbone, DINOHead(64, out_dim=10, hidden_dim=16, bottleneck_dim=6)).eval()
    views = [torch.randn(3, 3, 64, 32), torch.randn(3, 3, 64, 32), torch.randn(3, 3, 32, 16)]
    out = model(views)
    assert out.shape == (9, 10)
    with torch.no_grad():  # same as one view at a time: grouping changes nothing but speed
        one = torch.cat([model.head(backbone.forward_features(v)[:, 0]) for v in views])
    torch.testing.assert_close(out, one, atol=1e-5, rtol=1e-5)


def test_sampler_shards_whole_batches_and_skips_for_resume():
    ranks = [ShardedEpochSampler(23, 4, rank=r, world_size=2, seed=3) for r in range(2)]
    for s in ranks:
        s.set_epoch(1)
    a, b = list(ranks[0]), list(ranks[1])
    assert len(a) == len(b) == 8 and not set(a) & set(b)  # 23 // 8 = 2 global batches
    ranks[0].set_epoch(1, skip_batches=1)
    assert list(ranks[0]) == a[4:]
    ranks[0].set_epoch(2)
    assert list(ranks[0]) != a


def test_sharded_loader_batches_and_refuses_less_than_one_global_batch():
    import pytest

    from reidkit.data.samplers import sharded_loader

    data = torch.arange(10).float()
    loader, sampler = sharded_loader(data, 4, 0, 2, seed=3, num_workers=0, pin_memory=False)
    sampler.set_epoch(1)
    want = ShardedEpochSampler(10, 4, 0, 2, seed=3)
    want.set_epoch(1)
    assert [b.tolist() for b in loader] == [[float(i) for i in list(want)]]  # 10 // 8 = 1 batch of 4
    with pytest.raises(KeyError, match=r"the pool has 10 images, fewer than one global batch \(6 x 2\)"):
        sharded_loader(data, 6, 0, 2, seed=0, num_workers=0, pin_memory=False, what="the pool", error=KeyError)
