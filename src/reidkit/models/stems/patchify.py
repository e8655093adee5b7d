"""The patchify stem: one strided convolution, ``patch`` x ``patch`` kernels every ``stride`` pixels.

With ``stride < patch`` the patches overlap (TransReID's stride 12 with patch 16); the official
TransReID-SSL recipes use ``stride == patch == 16``. Keys: ``proj.{weight,bias}`` as in timm.
"""
from __future__ import annotations

import torch
from torch import nn

from reidkit.models.stems.base import StemBase


class PatchifyStem(StemBase):
    def __init__(self, img_size=224, patch_size=16, in_chans: int = 3, embed_dim: int = 768,
                 bias: bool = True, stride=None, **_timm_kwargs) -> None:
        super().__init__(img_size, patch_size, stride or patch_size, embed_dim)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.stride,
                              bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, gh, gw, D)."""
        self.check_input(x)
        return self.proj(x).permute(0, 2, 3, 1)
