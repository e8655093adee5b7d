"""The ReID head: pooling of the backbone's tokens, then the BNNeck (Luo et al., "Bag of Tricks").

BNNeck: the global feature f (B, D) goes through BatchNorm1d whose bias is frozen at 0 (so the
BN feature stays centred for the softmax loss), then a bias-free linear classifier initialised
N(0, 0.001). Triplet loss uses f (pre-BN), the ID loss the logits of BN(f). The official
TransReID-SSL fine-tuning tests with f ("before"); cluster-contrast USL/UDA uses BN(f) ("after").
Keys: ``bottleneck.*`` and ``classifier.weight``, as in the official code.
"""
from __future__ import annotations

import torch
from torch import nn


class GeM(nn.Module):
    """Generalised mean pooling over tokens: ``(mean(clamp(x, eps)^p))^(1/p)``; (B, N, D) -> (B, D).

    ``p = 1`` is average pooling, ``p -> inf`` max pooling; p is learnable, starting at 3.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        p = self.p.clamp(min=1.0)
        return tokens.float().clamp(min=self.eps).pow(p).mean(dim=1).pow(1.0 / p).to(tokens.dtype)


class TokenPool(nn.Module):
    """Global feature from tokens (B, P + N, D) with P prefix (CLS) tokens -> (B, D).

    ``'cls'``: the CLS token (the official choice); ``'avg'`` / ``'gem'``: pooling of the N patch
    tokens (for a CNN, the N = h*w positions of its feature map, with P = 0).
    """

    def __init__(self, mode: str = "cls", num_prefix: int = 1) -> None:
        super().__init__()
        if mode not in ("cls", "avg", "gem"):
            raise ValueError(f"unknown pool {mode!r}; choose cls, avg or gem")
        if mode == "cls" and num_prefix < 1:
            raise ValueError("pool='cls' needs a CLS token; use 'avg' or 'gem' for CNN backbones")
        self.mode, self.num_prefix = mode, num_prefix
        self.gem = GeM() if mode == "gem" else None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.mode == "cls":
            return tokens[:, 0]
        patches = tokens[:, self.num_prefix:]
        return patches.mean(dim=1) if self.mode == "avg" else self.gem(patches)


class BNNeck(nn.Module):
    """BatchNorm1d (bias frozen at 0) -> bias-free classifier; no classifier when ``num_classes == 0``."""

    def __init__(self, dim: int, num_classes: int = 0) -> None:
        super().__init__()
        self.bottleneck = nn.BatchNorm1d(dim)
        nn.init.ones_(self.bottleneck.weight)
        nn.init.zeros_(self.bottleneck.bias)
        self.bottleneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False) if num_classes > 0 else None
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, D) -> (BN feature (B, D), logits (B, num_classes) or None)."""
        bn = self.bottleneck(feat)
        return bn, (self.classifier(bn) if self.classifier is not None else None)
