"""The scaled-ReLU convolution stem (Wang et al., arXiv 2109.03810).

The paper's finding: what stabilises ViT training is not convolution as such but a normalisation
that rescales (BatchNorm) followed by ReLU in front of the patch projection. This is the plain-BN
version of the stem TransReID-SSL ships as ICS (see ``ics.py``), with the same layer indices:

    conv.0  Conv 7x7 s2 (3 -> 64, no bias)   conv.1 BN(64)  conv.2 ReLU
    conv.3  Conv 3x3 s1 (64 -> 64, no bias)  conv.4 BN(64)  conv.5 ReLU
    conv.6  Conv 3x3 s1 (64 -> 64, no bias)  conv.7 BN(64)  conv.8 ReLU
    proj    Conv (patch/2)x(patch/2), stride patch/2 (64 -> D, with bias)

The total stride is the patch size (2 x patch/2), so the token grid equals the patchify stem's.
The two full-resolution 3x3 convolutions dominate its cost (~0.8 GMAC at 256x128), which is why the
benchmark runs them channels-last.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from reidkit.models.stems.base import StemBase


class ConvStem(StemBase):
    """Conv-norm-ReLU x3 then a (patch/2)-strided projection; (B, 3, H, W) -> (B, H/p, W/p, D)."""

    def __init__(self, img_size=224, patch_size=16, in_chans: int = 3, embed_dim: int = 768,
                 bias: bool = True, hidden_dim: int = 64,
                 norms: tuple[Callable[[int], nn.Module], ...] | None = None, **_timm_kwargs) -> None:
        super().__init__(img_size, patch_size, patch_size, embed_dim)
        ph, pw = self.patch_size
        if ph % 2 or pw % 2:
            raise ValueError(f"conv stems need an even patch size, got {self.patch_size}")
        norms = norms or (nn.BatchNorm2d, nn.BatchNorm2d, nn.BatchNorm2d)
        self.conv = nn.Sequential(
            nn.Conv2d(in_chans, hidden_dim, 7, stride=2, padding=3, bias=False),
            norms[0](hidden_dim), nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, hidden_dim, 3, stride=1, padding=1, bias=False),
            norms[1](hidden_dim), nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, hidden_dim, 3, stride=1, padding=1, bias=False),
            norms[2](hidden_dim), nn.ReLU(inplace=True),
        )
        self.proj = nn.Conv2d(hidden_dim, embed_dim, kernel_size=(ph // 2, pw // 2),
                              stride=(ph // 2, pw // 2), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, gh, gw, D); keeps channels-last inputs channels-last."""
        self.check_input(x)
        return self.proj(self.conv(x)).permute(0, 2, 3, 1)
