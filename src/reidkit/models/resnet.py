"""CNN baselines: ResNet-50 with last stride 1, and ResNet-50-IBN-a (Pan et al., ECCV 2018).

Both come from torchvision's ResNet-50 (v1.5: stride on the 3x3 conv). "Last stride 1" removes the
downsampling of layer4, giving a 16x8 map at 256x128 instead of 8x4 (the standard ReID trick).
IBN-a replaces ``bn1`` of every bottleneck in layer1-3 by :class:`~reidkit.models.stems.ics.IBN`
(InstanceNorm on the first half of the channels), as in the IBN-Net paper; layer4 stays BN. Keys
match torchvision and the IBN-Net release (``layerX.Y.bn1.IN.*`` / ``.BN.*``).

``forward_features(x) -> (B, 2048, h, w)``; the ReID model pools it.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet50

from reidkit.models.stems.ics import IBN


class ReIDResNet(nn.Module):
    def __init__(self, ibn: bool = False, last_stride: int = 1) -> None:
        super().__init__()
        net = resnet50(weights=None)
        if last_stride != 2:
            net.layer4[0].conv2.stride = (last_stride, last_stride)
            net.layer4[0].downsample[0].stride = (last_stride, last_stride)
        if ibn:
            for layer in (net.layer1, net.layer2, net.layer3):
                for block in layer:
                    block.bn1 = IBN(block.bn1.num_features)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.embed_dim = self.num_features = 2048
        self.num_prefix_tokens = 0
        self.ibn = ibn

    def forward_features(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 2048, H/16, W/16) with last stride 1."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(2, 3))
