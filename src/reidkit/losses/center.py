"""Center loss (Wen et al. 2016), in the "bag of tricks" ReID form (Luo et al. 2019).

``loss = mean_i ||f_i - c_{y_i}||^2`` over the batch: it pulls every feature towards a learned
centre of its identity. The centres are a parameter of this module; the bag-of-tricks recipe
trains them with their own SGD (lr 0.5) on gradients divided by the loss weight, so that the
weight (0.0005) scales only the pull on the features, not the centres' own speed.
"""
from __future__ import annotations

import torch
from torch import nn


class CenterLoss(nn.Module):
    """(B, D) features, (B,) labels in ``[0, num_classes)`` -> scalar."""

    def __init__(self, num_classes: int, feat_dim: int):
        super().__init__()
        if num_classes < 1 or feat_dim < 1:
            raise ValueError(f"center loss needs num_classes >= 1 and feat_dim >= 1, got {num_classes}, {feat_dim}")
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, feat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        diff = feat.float() - self.centers[labels]
        return diff.pow(2).sum(1).clamp(1e-12, 1e12).mean()
