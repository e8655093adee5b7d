"""DINO projection head: MLP -> L2-normalised bottleneck -> weight-normalised prototypes.

``DINOHead(in_dim)`` maps a backbone CLS feature (B, D) to prototype logits (B, out_dim):

    Linear(D, 2048) - GELU - Linear(2048, 2048) - GELU - Linear(2048, 256)   (``mlp.0/2/4``)
    L2-normalise over the 256 bottleneck dims
    weight-normalised Linear(256, out_dim, bias=False)                        (``last_layer``)

The last layer stores its weight as ``weight_g`` (out_dim, 1) and ``weight_v`` (out_dim, 256),
``W = g * v / ||v||`` row-wise: the names and shapes of the official DINO checkpoint, so an official
``head.*`` state dict loads with no key mapping. With ``norm_last_layer=True`` (the paper) ``g`` is
fixed at 1, i.e. the prototypes are unit vectors and the logits are cosines.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WeightNormLinear(nn.Module):
    """Bias-free linear layer with weight normalisation (Salimans & Kingma), keys ``weight_g/weight_v``."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        v = nn.Linear(in_features, out_features, bias=False).weight.detach()  # PyTorch's default init
        self.weight_v = nn.Parameter(v.clone())
        self.weight_g = nn.Parameter(v.norm(dim=1, keepdim=True))

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)


class DINOHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 nlayers: int = 3, use_bn: bool = False, norm_last_layer: bool = True):
        super().__init__()
        if nlayers < 1:
            raise ValueError(f"DINOHead needs at least one layer, got nlayers={nlayers}")
        # Linear [BN] GELU ... Linear: indices 0, 2, 4 for the paper's head, as in the official keys
        dims = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i in range(nlayers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < nlayers - 1:
                layers += ([nn.BatchNorm1d(dims[i + 1])] if use_bn else []) + [nn.GELU()]
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim)
        self.norm_last_layer = norm_last_layer
        if norm_last_layer:
            self.last_layer.weight_g.data.fill_(1.0)
            self.last_layer.weight_g.requires_grad = False
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, out_dim) logits (cosines to the prototypes when ``norm_last_layer``)."""
        x = self.mlp(x)
        x = F.normalize(x, dim=-1, p=2, eps=1e-6 if x.dtype == torch.float16 else 1e-12)
        return self.last_layer(x)

