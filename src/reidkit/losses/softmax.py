"""Identity (classification) losses: cross-entropy with optional label smoothing, and the
margin-based softmax heads ArcFace, CosFace and circle loss.

The official recipe is plain cross-entropy on ``classifier(BN(f))`` (no smoothing). The margin
heads replace the linear classifier: they compare the L2-normalised feature with L2-normalised
class weights (cosines in [-1, 1]), add a margin for the true class, and scale by ``s``:

* CosFace (Wang et al. 2018):  target logit ``s (cos - m)``, others ``s cos``.
* ArcFace (Deng et al. 2019):  target logit ``s cos(theta + m)``; when ``theta + m > pi`` the
  monotone fallback ``s (cos - m sin m)`` keeps the logit decreasing in theta (insightface).
* Circle (Sun et al. 2020, class-level form): target ``s a_p (cos - (1 - m))`` with
  ``a_p = relu(1 + m - cos)``, others ``s a_n (cos - m)`` with ``a_n = relu(cos + m)``; the
  weights ``a`` are not back-propagated.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

MarginKind = Literal["arcface", "cosface", "circle"]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """(B, C) logits, (B,) labels -> scalar. Smoothing ``e`` targets ``(1 - e) onehot + e / C``."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


class MarginSoftmax(nn.Module):
    """A classifier with a margin: (B, D) feature [, (B,) labels] -> (B, C) logits.

    Without labels (or in eval mode) it returns the plain scaled cosines ``s cos``.
    Defaults: ArcFace s=64, m=0.5; CosFace s=64, m=0.35; circle s=64, m=0.25 (the papers' values).
    """

    DEFAULTS = {"arcface": (64.0, 0.5), "cosface": (64.0, 0.35), "circle": (64.0, 0.25)}

    def __init__(self, in_features: int, num_classes: int, kind: MarginKind = "arcface",
                 scale: float | None = None, margin: float | None = None):
        super().__init__()
        if kind not in self.DEFAULTS:
            raise ValueError(f"unknown margin softmax {kind!r}; expected one of {sorted(self.DEFAULTS)}")
        s, m = self.DEFAULTS[kind]
        self.kind = kind
        self.scale = float(s if scale is None else scale)
        self.margin = float(m if margin is None else margin)
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.normal_(self.weight, std=0.001)

    def forward(self, feat: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cos = F.linear(F.normalize(feat.float(), dim=1), F.normalize(self.weight.float(), dim=1))
        if labels is None or not self.training:
            return self.scale * cos
        onehot = F.one_hot(labels, cos.shape[1]).to(torch.bool)
        m = self.margin
        if self.kind == "cosface":
            logits = torch.where(onehot, cos - m, cos)
        elif self.kind == "arcface":
            sin = (1.0 - cos.pow(2)).clamp_min(1e-12).sqrt()
            cos_m = cos * math.cos(m) - sin * math.sin(m)  # cos(theta + m)
            fallback = cos - m * math.sin(m)
            target = torch.where(cos > math.cos(math.pi - m), cos_m, fallback)
            logits = torch.where(onehot, target, cos)
        else:  # circle
            alpha_p = (1.0 + m - cos).clamp_min(0.0).detach()
            alpha_n = (cos + m).clamp_min(0.0).detach()
            logits = torch.where(onehot, alpha_p * (cos - (1.0 - m)), alpha_n * (cos - m))
        return self.scale * logits

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}, kind={self.kind}, s={self.scale}, m={self.margin}"
