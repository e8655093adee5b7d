"""An inference-only form of the conv / ICS stems: BatchNorm folded into the convolutions.

In eval mode BN is an affine map per channel, so ``BN(conv(x)) = conv'(x)`` with scaled weights and
a bias. That holds for the plain BN of the conv stem, the last ICS norm, and the BN half of each
IBN; the InstanceNorm half depends on the image and is applied in place after the convolution, with
its statistics in float32. ReLU runs in place. On a 2-core CPU this removes most of the stem's
memory passes (split, copy, norm, cat), which cost more than its convolutions.

Built by :func:`reidkit.models.inference.prepare_for_inference`; not meant for training or saving
(the keys differ from the official layout, which the unfused stems keep).
"""
from __future__ import annotations

import torch
from torch import nn

from reidkit.models.stems.base import StemBase
from reidkit.models.stems.conv import ConvStem
from reidkit.models.stems.ics import IBN


def _fold(conv: nn.Conv2d, norm: nn.Module) -> tuple[nn.Conv2d, nn.InstanceNorm2d | None]:
    """conv followed by BN (or IBN) -> conv with BN folded in, and the IN left to apply (or None)."""
    bn, start, inorm = (norm.BN, norm.half, norm.IN) if isinstance(norm, IBN) else (norm, 0, None)
    w = conv.weight.detach().double().clone()
    b = torch.zeros(w.shape[0], dtype=torch.float64)
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w[start:] *= scale[:, None, None, None]
    b[start:] = bn.bias.detach().double() - bn.running_mean.double() * scale
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      bias=True).to(conv.weight.device)
    with torch.no_grad():
        fused.weight.copy_(w)
        fused.bias.copy_(b)
    return fused, inorm


class FusedConvStem(StemBase):
    """Eval-only equivalent of a :class:`ConvStem` / ``ICSStem``; (B, 3, H, W) -> (B, gh, gw, D)."""

    def __init__(self, stem: ConvStem) -> None:
        super().__init__(stem.img_size, stem.patch_size, stem.stride, stem.embed_dim)
        if stem.training:
            raise ValueError("fuse a stem in eval mode: BatchNorm must use its running statistics")
        pairs = [_fold(stem.conv[i], stem.conv[i + 1]) for i in (0, 3, 6)]
        self.convs = nn.ModuleList(c for c, _ in pairs)
        self.instance_norms = nn.ModuleList(n if n is not None else nn.Identity() for _, n in pairs)
        self.proj = stem.proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        for conv, inorm in zip(self.convs, self.instance_norms):
            x = conv(x)
            if isinstance(inorm, nn.InstanceNorm2d):
                half = x[:, :inorm.num_features]
                var, mean = torch.var_mean(half.float(), dim=(2, 3), keepdim=True, correction=0)
                scale = inorm.weight.float()[:, None, None] * torch.rsqrt(var + inorm.eps)
                shift = inorm.bias.float()[:, None, None] - mean * scale
                half.mul_(scale.to(x.dtype)).add_(shift.to(x.dtype))
            x = torch.relu_(x)
        return self.proj(x).permute(0, 2, 3, 1)
