"""ICS, the IBN-based convolution stem of TransReID-SSL (spec: transreid_ssl.md section 2).

Exactly the official layer stack, so that official checkpoints load key for key:

    conv.0  Conv 7x7 s2 (3 -> 64, no bias)   conv.1 IBN(64)  conv.2 ReLU
    conv.3  Conv 3x3 s1 (64 -> 64, no bias)  conv.4 IBN(64)  conv.5 ReLU
    conv.6  Conv 3x3 s1 (64 -> 64, no bias)  conv.7 BN(64)   conv.8 ReLU
    proj    Conv 8x8 s8 (64 -> D, with bias)

IBN puts InstanceNorm (affine, no running stats) on the first half of the channels and BatchNorm on
the second half: instance statistics remove per-image style (lighting, camera colour) early, which
is what helps cross-domain re-identification. The last conv is BN only.
"""
from __future__ import annotations

import torch
from torch import nn

from reidkit.models.stems.conv import ConvStem


class IBN(nn.Module):
    """Instance-Batch Normalisation: IN on channels [0, half), BN on [half, C); keys ``IN.*``, ``BN.*``."""

    def __init__(self, planes: int, ratio: float = 0.5) -> None:
        super().__init__()
        self.half = int(planes * ratio)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([self.IN(a.contiguous()), self.BN(b.contiguous())], dim=1)


class ICSStem(ConvStem):
    """The conv stem with IBN in its first two norms; (B, 3, H, W) -> (B, H/16, W/16, D) for patch 16."""

    def __init__(self, img_size=224, patch_size=16, in_chans: int = 3, embed_dim: int = 768,
                 bias: bool = True, hidden_dim: int = 64, **timm_kwargs) -> None:
        super().__init__(img_size, patch_size, in_chans, embed_dim, bias, hidden_dim,
                         norms=(IBN, IBN, nn.BatchNorm2d), **timm_kwargs)
