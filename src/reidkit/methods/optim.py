"""Optimisers and learning-rate schedules, the schedules computed up front as plain arrays.

Parameter groups
  * ``sgd_param_groups``: the TransReID recipe. Every trainable parameter whose name contains
    "bias" gets ``bias_lr_factor`` x lr (2x) and ``weight_decay_bias``; the rest lr and
    ``weight_decay``. Frozen parameters (the BNNeck bias) are left out.
  * ``adamw_param_groups``: no weight decay on biases, norms and tokens (ndim <= 1, cls/pos
    tokens); optional layer-wise lr decay (BEiT / MAE fine-tuning): block i of L gets
    ``decay ** (L + 1 - (i + 1))`` x lr, the stem and tokens ``decay ** (L + 1)``, the head 1.

Schedules (each group keeps its own peak lr in ``group["peak_lr"]``)
  * ``timm_cosine_epoch_lr``: timm's ``CosineLRScheduler`` as the official recipe steps it
    (the official TransReID-SSL code, He et al. 2021): the lr used *during* 0-based epoch t is
      t <  W:  init + t (peak - init) / W                      (linear warm-up from 0.01 lr)
      t >= W:  lr_min + (peak - lr_min) (1 + cos(pi t / T)) / 2 (absolute t: warmup_prefix=False)
    with ``init = 0.01 base_lr`` and ``lr_min = 0.002 base_lr`` for every group (also 2x biases).
  * ``cosine_iter_schedule``: per-iteration linear warm-up then cosine (DINO style), an array.
  * ``step_epoch_lr``: ``base * gamma ** (t // step)`` (cluster-contrast StepLR).
"""
from __future__ import annotations

import math
import re
from typing import Iterable

import numpy as np
import torch
from torch import nn


def _trainable(model: nn.Module) -> Iterable[tuple[str, nn.Parameter]]:
    return ((n, p) for n, p in model.named_parameters() if p.requires_grad)


def sgd_param_groups(model: nn.Module, lr: float, weight_decay: float = 1e-4, bias_lr_factor: float = 2.0,
                     weight_decay_bias: float | None = None) -> list[dict]:
    """Two groups (weights, biases), numerically the same as the official one-group-per-parameter."""
    wd_bias = weight_decay if weight_decay_bias is None else weight_decay_bias
    weights, biases = [], []
    for name, p in _trainable(model):
        (biases if "bias" in name else weights).append(p)
    groups = [{"params": weights, "lr": lr, "weight_decay": weight_decay, "name": "weights"},
              {"params": biases, "lr": lr * bias_lr_factor, "weight_decay": wd_bias, "name": "biases"}]
    return [g for g in groups if g["params"]]


_BLOCK = re.compile(r"(?:^|\.)(?:blocks|layers?)\.(\d+)\.")
_STEM = ("cls_token", "pos_embed", "patch_embed", "reg_token", "sie_embed", "mask_token", "stem")


def layer_id(name: str, num_layers: int) -> int:
    """0 for the stem and tokens, i + 1 for transformer block i, num_layers + 1 for the rest (head)."""
    m = _BLOCK.search(name)
    if m:
        return int(m.group(1)) + 1
    if any(part in name for part in _STEM):
        return 0
    return num_layers + 1


def adamw_param_groups(model: nn.Module, lr: float, weight_decay: float = 0.05,
                       layer_decay: float = 1.0) -> list[dict]:
    """AdamW groups: decay / no-decay x (optional) per-layer lr scale ``layer_decay ** (L + 1 - id)``."""
    ids = [int(m.group(1)) for n, _ in model.named_parameters() if (m := _BLOCK.search(n))]
    num_layers = max(ids) + 1 if ids else 0
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in _trainable(model):
        no_decay = p.ndim <= 1 or name.endswith(".bias") or any(t in name for t in ("cls_token", "pos_embed"))
        lid = layer_id(name, num_layers) if layer_decay != 1.0 else num_layers + 1
        scale = layer_decay ** (num_layers + 1 - lid)
        key = (lid, no_decay)
        if key not in groups:
            groups[key] = {"params": [], "lr": lr * scale, "weight_decay": 0.0 if no_decay else weight_decay,
                           "name": f"layer{lid}_{'no_decay' if no_decay else 'decay'}", "lr_scale": scale}
        groups[key]["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def dino_param_groups(model: nn.Module) -> list[dict]:
    """DINO's two groups (also CoKe's and LOOK's): weight decay on matrices only; biases and norm parameters
    (ndim <= 1) are not regularised. The decay itself is set by the caller (per iteration in DINO)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith(".bias") or p.ndim == 1 else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def clip_gradients(model: nn.Module, clip: float) -> None:
    """Per-parameter clipping: each gradient is scaled down to norm ``clip`` on its own (DINO)."""
    for p in model.parameters():
        if p.grad is not None:
            norm = p.grad.detach().norm(2)
            coef = clip / (norm + 1e-6)
            if coef < 1:
                p.grad.mul_(coef)


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, *, momentum: float = 0.9,
                    bias_lr_factor: float = 2.0, weight_decay_bias: float | None = None,
                    layer_decay: float = 1.0, betas: tuple[float, float] = (0.9, 0.999),
                    fused: bool = False) -> torch.optim.Optimizer:
    """``sgd`` (official) or ``adamw``; every group remembers its ``peak_lr`` for the schedules.
    ``fused``: one fused kernel per step (CUDA; same update up to float rounding)."""
    if name == "sgd":
        groups = sgd_param_groups(model, lr, weight_decay, bias_lr_factor, weight_decay_bias)
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=fused or None)
    elif name == "adamw":
        groups = adamw_param_groups(model, lr, weight_decay, layer_decay)
        opt = torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)
    else:
        raise ValueError(f"unknown optimizer {name!r}; expected 'sgd' or 'adamw'")
    for g in opt.param_groups:
        g["peak_lr"] = g["lr"]
    return opt


def timm_cosine_epoch_lr(t: int, peak_lr: float, base_lr: float, total_epochs: int, warmup_epochs: int = 20,
                         warmup_init_factor: float = 0.01, min_factor: float = 0.002,
                         warmup_prefix: bool = False) -> float:
    """lr used during 0-based epoch ``t`` (1-based epoch t + 1); see the module docstring."""
    init, lr_min = warmup_init_factor * base_lr, min_factor * base_lr
    if t < warmup_epochs:
        return init + t * (peak_lr - init) / warmup_epochs
    tc, period = (t - warmup_epochs, total_epochs - warmup_epochs) if warmup_prefix else (t, total_epochs)
    if tc >= period:  # past the single cycle: timm holds lr_min
        return lr_min
    return lr_min + 0.5 * (peak_lr - lr_min) * (1.0 + math.cos(math.pi * tc / period))


def cosine_iter_schedule(base: float, final: float, epochs: int, iters_per_epoch: int, warmup_epochs: float = 0,
                         warmup_start: float = 0.0) -> np.ndarray:
    """(epochs * iters_per_epoch,) float64: linear warm-up ``warmup_start -> base`` over the warm-up
    iterations (endpoint excluded), then cosine ``base -> final`` over the rest."""
    total = epochs * iters_per_epoch
    warm = min(int(round(warmup_epochs * iters_per_epoch)), total)
    ramp = warmup_start + (base - warmup_start) * np.arange(warm) / max(warm, 1)
    rest = np.arange(total - warm)
    cos = final + 0.5 * (base - final) * (1.0 + np.cos(np.pi * rest / max(len(rest), 1)))
    return np.concatenate([ramp, cos]).astype(np.float64)


def step_epoch_lr(t: int, base: float, step: int, gamma: float = 0.1) -> float:
    return base * gamma ** (t // step)


def set_lr(optimizer: torch.optim.Optimizer, lr_of_group) -> None:
    """Set every group's lr to ``lr_of_group(group)`` (a function of the group's ``peak_lr``)."""
    for g in optimizer.param_groups:
        g["lr"] = float(lr_of_group(g))
