"""Cluster memory for cluster-contrast (Dai et al. 2021; TransReID-SSL spec section 6.2 items 4 and 6).

The memory M (C, D) holds one L2-normalised centroid per pseudo-identity. It is rebuilt from the
cluster means at every re-clustering (:meth:`ClusterMemory.reset`) and then moves during the epoch:

    logits = normalize(f) . M^T / temperature          (B, C)
    loss   = cross_entropy(logits, pseudo_label)

and, in the backward pass (after the gradient w.r.t. f is taken with the old M):

    "hard": for each cluster c present in the batch, the instance with the LOWEST similarity to M_c
            (the hardest), M_c <- momentum * M_c + (1 - momentum) * f_hard, then re-normalised;
    "mean": for each instance in batch order, M_y <- momentum * M_y + (1 - momentum) * f, re-normalised.

``momentum`` weights the OLD entry (cluster-contrast's ``--momentum 0.2``), temperature 0.05.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

UpdateMode = Literal["hard", "mean"]


class _MemoryProduct(torch.autograd.Function):
    """inputs (B, D) @ memory (C, D)^T; backward returns the input gradient and updates the memory."""

    @staticmethod
    def forward(ctx, inputs, targets, memory, momentum, mode):
        ctx.save_for_backward(inputs, targets)
        ctx.memory, ctx.momentum, ctx.mode = memory, momentum, mode
        return inputs.mm(memory.t())

    @staticmethod
    def backward(ctx, grad_out):
        inputs, targets = ctx.saved_tensors
        memory = ctx.memory
        grad_in = grad_out.mm(memory.to(grad_out.dtype)) if ctx.needs_input_grad[0] else None
        update_memory(memory, inputs.detach().to(memory.dtype), targets, ctx.momentum, ctx.mode)
        return grad_in, None, None, None, None


@torch.no_grad()
def update_memory(memory: torch.Tensor, feats: torch.Tensor, targets: torch.Tensor, momentum: float,
                  mode: UpdateMode = "hard") -> None:
    """In-place momentum update of ``memory`` (C, D) from normalised ``feats`` (B, D), ``targets`` (B,)."""
    if mode == "mean":
        for f, y in zip(feats, targets.tolist()):
            memory[y] = momentum * memory[y] + (1.0 - momentum) * f
            memory[y] /= memory[y].norm().clamp_min(1e-12)
        return
    sims = (feats * memory[targets]).sum(1)  # similarity of each instance to its own centroid
    for c in torch.unique(targets).tolist():
        idx = torch.nonzero(targets == c).flatten()
        hard = idx[torch.argmin(sims[idx])]
        memory[c] = momentum * memory[c] + (1.0 - momentum) * feats[hard]
        memory[c] /= memory[c].norm().clamp_min(1e-12)


@torch.no_grad()
def cluster_centroids(features: torch.Tensor, labels: torch.Tensor, num_clusters: int | None = None) -> torch.Tensor:
    """L2-normalised mean feature of each cluster: (C, D) from features (N, D) and labels (N,) in
    0..C-1 (label -1, outliers, is ignored)."""
    keep = labels >= 0
    feats, labs = features[keep].float(), labels[keep].long()
    c = int(num_clusters if num_clusters is not None else (int(labs.max()) + 1 if labs.numel() else 0))
    sums = torch.zeros(c, features.shape[1], dtype=torch.float32, device=features.device)
    sums.index_add_(0, labs, feats)
    counts = torch.bincount(labs, minlength=c).clamp_min(1).to(sums.dtype)
    return F.normalize(sums / counts[:, None], dim=1)


class ClusterMemory(nn.Module):
    """Contrastive loss against a momentum-updated cluster memory.

    ``forward(feats (B, D), targets (B,) int64 in 0..C-1) -> scalar loss``; ``feats`` are normalised
    here. State: ``self.features`` (C, D) float32 buffer (saved in ``state_dict``), ``temperature``,
    ``momentum`` (weight of the old entry) and ``mode`` ('hard' or 'mean').
    """

    def __init__(self, num_features: int, num_clusters: int = 0, temperature: float = 0.05,
                 momentum: float = 0.2, mode: UpdateMode = "hard"):
        super().__init__()
        if mode not in ("hard", "mean"):
            raise ValueError(f"cluster memory update must be 'hard' or 'mean', got {mode!r}")
        self.num_features, self.temperature, self.momentum, self.mode = num_features, temperature, momentum, mode
        self.register_buffer("features", torch.zeros(num_clusters, num_features))

    @property
    def num_clusters(self) -> int:
        return self.features.shape[0]

    @torch.no_grad()
    def reset(self, centroids: torch.Tensor) -> None:
        """Replace the memory by new (C, D) centroids (normalised here)."""
        self.features = F.normalize(centroids.detach().float(), dim=1).to(self.features.device)

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, C) similarities / temperature, without touching the memory (e.g. for the Dash filter)."""
        return F.normalize(feats.float(), dim=1).mm(self.features.t()) / self.temperature

    def forward(self, feats: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.num_clusters == 0:
            raise RuntimeError("the cluster memory is empty: call reset(centroids) after clustering")
        inputs = F.normalize(feats.float(), dim=1)
        sims = _MemoryProduct.apply(inputs, targets, self.features, self.momentum, self.mode)
        return F.cross_entropy(sims / self.temperature, targets)
