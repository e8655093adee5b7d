"""CoKe pre-training: cluster discrimination with online constrained k-means, on unlabelled person crops.

The story: the recipe (``CoKeConfig``), the head (projection MLP -> 128-d + prediction MLP, as the
paper's ResNet recipe), the step (views -> head -> ``CoKeLoss``, which assigns the global batch
online and trains on last epoch's labels), and ``end_epoch`` (the k-means centre step). The method's
equations and choices are in ``reidkit.losses.coke``; the loop (DDP, resume, checkpoints, export) in
``reidkit.methods.pretrain_loop``.

Defaults follow the official CoKe scripts (checked 2026-12-07, see ``reidkit.losses.coke``): three
clusterings K = 3000, 4000, 5000, minimum cluster size ratio 0.4, dual step 20, temperature 0.1 and
beta 1 (single view; 0.05 and 0.5 with two views), the moving-average stage over the last 20% of the
epochs with 5 label entries at temperature 0.5, a 128-d projection with BN and a prediction MLP. The
optimiser is DINO's (AdamW, cosine lr, per-parameter clip) instead of the official LARS for
ResNet-50: ViT backbones are trained with AdamW in every recipe we have.

``pretrain_coke(cfg, resume=False) -> run folder``, also ``reidkit pretrain RECIPE`` with
``method: coke``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from reidkit.losses.coke import CoKeLoss, check_coke_problem
from reidkit.methods.pretrain_loop import PretrainNet, build_reid, mlp, run_pretraining
from reidkit.recipes.pretrain_views import CoKeConfig, CoKeHead


class CoKeProjection(nn.Module):
    """``(V, B, D) -> (proj (V, B, out), pred (V, B, out) or None)``."""

    def __init__(self, dim: int, h: CoKeHead):
        super().__init__()
        self.projector = mlp([dim, h.hidden_dim, h.hidden_dim, h.out_dim], last_bn=True)
        self.predictor = mlp([h.out_dim, h.hidden_dim, h.out_dim]) if h.predictor else None

    def forward(self, feats: torch.Tensor):
        v, b, d = feats.shape
        proj = self.projector(feats.reshape(v * b, d))
        pred = self.predictor(proj) if self.predictor is not None else None
        return proj.view(v, b, -1), pred.view(v, b, -1) if pred is not None else None


def check_problem(cfg: CoKeConfig, num_images: int, labels) -> None:
    check_coke_problem(num_images, cfg.coke.num_clusters, cfg.coke.min_size_ratio, where="coke")


def pretrain_coke(cfg: CoKeConfig, resume: bool = False, force: bool = False) -> Path:
    """Run (or resume) CoKe pre-training; returns the run folder (``last.pt``, ``last.safetensors``, ``log.csv``)."""

    def build(n: int, labels):
        reid, model_config = build_reid(cfg.model, cfg.crops.global_size)
        net = PretrainNet(reid, CoKeProjection(reid.feat_dim, cfg.head))
        return net, CoKeLoss(n, cfg.head.out_dim, cfg.coke, seed=cfg.seed, epochs=cfg.solver.epochs), model_config

    def step(net, loss_fn: CoKeLoss, views, index, labels, epoch):
        proj, pred = net(views)
        loss = loss_fn(proj, index, pred)
        sizes = loss_fn.clusterings[0].counts
        fed = sizes[sizes > 0]
        return loss, {"dual_max": float(loss_fn.clusterings[0].duals.max()),
                      "smallest_cluster": float(fed.min()) if fed.numel() == sizes.numel() else 0.0}

    return run_pretraining(cfg, "CoKe", resume, force, lambda n, labels: check_problem(cfg, n, labels), build, step,
                           end_epoch=lambda loss_fn: loss_fn.end_epoch())


__all__ = ["CoKeConfig", "CoKeHead", "CoKeProjection", "pretrain_coke"]
