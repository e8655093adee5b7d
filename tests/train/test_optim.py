"""Optimiser groups and schedules vs the spec formulas (§10 item 3) and timm's own scheduler."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from reidkit.methods.optim import (adamw_param_groups, build_optimizer, cosine_iter_schedule, layer_id,
                                   sgd_param_groups, step_epoch_lr, timm_cosine_epoch_lr)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.bn.bias.requires_grad_(False)  # the frozen BNNeck bias


def test_sgd_groups_bias_double_lr_and_frozen_excluded():
    groups = sgd_param_groups(Net(), lr=4e-4, weight_decay=1e-4)
    by = {g["name"]: g for g in groups}
    assert by["weights"]["lr"] == 4e-4 and by["biases"]["lr"] == 8e-4
    assert by["biases"]["weight_decay"] == 1e-4 and by["weights"]["weight_decay"] == 1e-4
    net = Net()
    opt = build_optimizer(net, "sgd", 4e-4, 1e-4)
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(net.bn.bias) not in ids and id(net.fc.bias) in ids and len(ids) == 3
    assert opt.param_groups[0]["momentum"] == 0.9


def _spec(e, base=1.0, peak=1.0):
    """1-based epoch e of the official schedule, straight from the spec text."""
    t = e - 1
    if t < 20:
        return 0.01 * base + t * (peak - 0.01 * base) / 20
    return 0.002 * base + 0.5 * (peak - 0.002 * base) * (1 + math.cos(math.pi * t / 120))


@pytest.mark.parametrize("epoch,expect", [(1, 0.01), (20, 0.9505), (21, 0.93314), (120, None)])
def test_timm_cosine_hand_values(epoch, expect):
    got = timm_cosine_epoch_lr(epoch - 1, 1.0, 1.0, 120)
    if expect is not None:
        assert got == pytest.approx(expect, abs=1e-5)
    assert got == pytest.approx(_spec(epoch), rel=1e-12)
    # biases: peak 2 lr, same absolute init and floor
    assert timm_cosine_epoch_lr(epoch - 1, 2.0, 1.0, 120) == pytest.approx(_spec(epoch, peak=2.0), rel=1e-12)
    assert timm_cosine_epoch_lr(0, 2.0, 1.0, 120) == pytest.approx(0.01)


def test_matches_timm_cosine_scheduler_stepped_like_the_official_loop():
    from timm.scheduler import CosineLRScheduler

    base = 4e-4
    w = nn.Parameter(torch.zeros(1))
    b = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [w], "lr": base}, {"params": [b], "lr": 2 * base}], lr=base)
    sched = CosineLRScheduler(opt, t_initial=120, lr_min=0.002 * base, warmup_t=20,
                              warmup_lr_init=0.01 * base, warmup_prefix=False, cycle_limit=1, t_in_epochs=True)
    for epoch in range(1, 121):  # the lr in force while training epoch `epoch`, then step(epoch)
        got = [g["lr"] for g in opt.param_groups]
        ours = [timm_cosine_epoch_lr(epoch - 1, p, base, 120) for p in (base, 2 * base)]
        assert got == pytest.approx(ours, rel=1e-9), epoch
        sched.step(epoch)


def test_cosine_iter_schedule_shape_and_ends():
    s = cosine_iter_schedule(1.0, 0.1, epochs=5, iters_per_epoch=10, warmup_epochs=1, warmup_start=0.0)
    assert s.shape == (50,)
    assert s[0] == 0.0 and s[5] == pytest.approx(0.5)
    assert s[10] == pytest.approx(1.0)
    assert s[-1] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 39 / 40)))
    assert np.all(np.diff(s[10:]) <= 1e-12)


def test_step_schedule():
    assert [step_epoch_lr(t, 1.0, 20) for t in (0, 19, 20, 45)] == pytest.approx([1, 1, 0.1, 0.01])


def test_layer_decay_groups_on_a_timm_vit():
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(img_size=(32, 16), patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3)
    groups = adamw_param_groups(vit, lr=1.0, weight_decay=0.05, layer_decay=0.5)
    scale_of = {}
    for g in groups:
        for p in g["params"]:
            scale_of[id(p)] = (g["lr"], g["weight_decay"])
    named = dict(vit.named_parameters())
    assert scale_of[id(named["patch_embed.proj.weight"])] == (0.125, 0.05)  # 0.5 ** 3
    assert scale_of[id(named["cls_token"])] == (0.125, 0.0)
    assert scale_of[id(named["blocks.0.attn.qkv.weight"])] == (0.25, 0.05)
    assert scale_of[id(named["blocks.1.mlp.fc1.bias"])] == (0.5, 0.0)
    assert scale_of[id(named["head.weight"])] == (1.0, 0.05)
    assert layer_id("backbone.blocks.11.norm1.weight", 12) == 12
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(vit, "lamb", 1.0, 0.0)
