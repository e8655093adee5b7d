"""Batch-hard triplet loss (Hermans et al. 2017), as the TransReID-SSL recipe uses it.

For every anchor in a PK batch, take its hardest positive (largest distance, same pid) and its
hardest negative (smallest distance, other pid), then

* soft margin (``margin=None``, the official recipe): ``log(1 + exp(d_ap - d_an))``;
* hard margin (``margin=m``): ``max(0, d_ap - d_an + m)``.

Distances are Euclidean on the raw (un-normalised) feature by default (``SOLVER.TRP_L2=False``);
``normalize=True`` L2-normalises first. The anchor itself counts as a positive at distance ~0, as
in the official mining, so an identity with one image still yields a (trivial) positive.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def euclidean_distances(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """(N, D), (M, D) -> (N, M) Euclidean distances, float32, sqrt clamped away from 0 for the gradient."""
    x = x.float()
    y = x if y is None else y.float()
    d2 = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1)[None, :] - 2.0 * x @ y.t()
    return d2.clamp_min(1e-12).sqrt()


def hard_example_mining(dist: torch.Tensor, pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, B) distances, (B,) pids -> ``(d_ap, d_an, valid)``, each (B,).

    ``valid`` is False for anchors without any negative in the batch (their d_an is +inf).
    """
    same = pids[:, None] == pids[None, :]
    d_ap = dist.masked_fill(~same, float("-inf")).amax(1)
    d_an = dist.masked_fill(same, float("inf")).amin(1)
    return d_ap, d_an, torch.isfinite(d_an)


class TripletLoss(nn.Module):
    """Batch-hard triplet loss on a (B, D) feature with (B,) integer pids; returns a scalar."""

    def __init__(self, margin: float | None = None, normalize: bool = False):
        super().__init__()
        if margin is not None and margin < 0:
            raise ValueError(f"triplet margin must be >= 0 or None (soft margin), got {margin}")
        self.margin, self.normalize = margin, normalize

    def forward(self, feat: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        feat = feat.float()
        if self.normalize:
            feat = F.normalize(feat, dim=1)
        d_ap, d_an, valid = hard_example_mining(euclidean_distances(feat), pids)
        if not valid.any():  # a batch of one identity: nothing to push apart
            return feat.sum() * 0.0
        gap = d_ap[valid] - d_an[valid]
        if self.margin is None:
            return F.softplus(gap).mean()
        return F.relu(gap + self.margin).mean()

    def extra_repr(self) -> str:
        return f"margin={'soft' if self.margin is None else self.margin}, normalize={self.normalize}"
