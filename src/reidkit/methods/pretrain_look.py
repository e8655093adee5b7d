"""LOOK pre-training: supervised, with the leave-one-out k-NN loss, on a labelled person dataset.

Pre-train on a labelled source (another city, MSMT17, the ``mm`` merge; any reidkit format), then
fine-tune on the target with ``reidkit train ... model.weights=RUN/last.safetensors``. The loss and
its memory are in ``reidkit.losses.look``; the loop in ``reidkit.methods.pretrain_loop``.

``objective: ce`` trains the same network with a linear classifier and cross-entropy instead: the
supervised baseline LOOK is compared with, at the same data, augmentation and compute.

``pretrain_look(cfg, resume=False) -> run folder``, also ``reidkit pretrain RECIPE`` with ``method: look``.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reidkit.losses.look import LOOKError, LOOKLoss
from reidkit.methods.pretrain_loop import PretrainNet, build_reid, mlp, run_pretraining
from reidkit.recipes.pretrain_views import LOOKConfig, LOOKHead


class LOOKProjection(nn.Module):
    """``(V, B, D) -> (V, B, out)``: the k-NN embedding (LOOK), or class logits (``num_classes`` > 0, CE)."""

    def __init__(self, dim: int, h: LOOKHead, num_classes: int = 0):
        super().__init__()
        self.projector = mlp([dim, h.hidden_dim, h.out_dim]) if num_classes == 0 else None
        self.fc = nn.Linear(dim, num_classes) if num_classes > 0 else None

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        v, b, d = feats.shape
        layer = self.projector if self.projector is not None else self.fc
        return layer(feats.reshape(v * b, d)).view(v, b, -1)


class CrossEntropyObjective(nn.Module):
    """The CE baseline as a loss module without state (so both objectives share the loop)."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels)


def check_problem(cfg: LOOKConfig, num_images: int, labels) -> None:
    if labels is None:
        raise LOOKError(f"{cfg.data.root}: format {cfg.data.format!r} has no identity labels; LOOK is supervised "
                        "pre-training. For unlabelled images use `method: dino` or `method: coke`")
    if cfg.objective == "look" and not 1 <= cfg.look.k < num_images:
        raise LOOKError(f"look.k={cfg.look.k}: need 1 <= k < the number of training images ({num_images})")


def pretrain_look(cfg: LOOKConfig, resume: bool = False, force: bool = False) -> Path:
    """Run (or resume) LOOK (or CE) pre-training; returns the run folder."""

    def build(n: int, labels: torch.Tensor):
        reid, model_config = build_reid(cfg.model, cfg.crops.global_size)
        classes = int(labels.max()) + 1 if cfg.objective == "ce" else 0
        net = PretrainNet(reid, LOOKProjection(reid.feat_dim, cfg.head, classes))
        loss = LOOKLoss(n, cfg.head.out_dim, cfg.look) if cfg.objective == "look" else CrossEntropyObjective()
        return net, loss, model_config

    def step(net, loss_fn, views, index, labels, epoch):
        out = net(views)  # (V, B, out)
        loss = sum(loss_fn(o, labels, index) for o in out) / len(out)
        extra = {"no_positive": float(loss_fn.no_positive)} if isinstance(loss_fn, LOOKLoss) else {}
        return loss, extra

    return run_pretraining(cfg, "LOOK" if cfg.objective == "look" else "CE", resume, force,
                           lambda n, labels: check_problem(cfg, n, labels), build, step)


__all__ = ["LOOKConfig", "LOOKHead", "LOOKProjection", "pretrain_look"]
