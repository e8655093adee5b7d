"""ReIDModel: backbone -> pooling -> BNNeck, the one model class every training method uses."""
from __future__ import annotations

import torch
from torch import nn

from reidkit.models.heads import BNNeck, TokenPool
from reidkit.models.presets import ModelSpec, get_spec
from reidkit.models.resnet import ReIDResNet
from reidkit.models.vit import ReIDViT


def build_backbone(spec: ModelSpec) -> nn.Module:
    if spec.arch == "vit":
        return ReIDViT(img_size=spec.img_size, patch_size=spec.patch_size, stride=spec.stride,
                       stem=spec.stem, embed_dim=spec.embed_dim, depth=spec.depth,
                       num_heads=spec.num_heads, mlp_ratio=spec.mlp_ratio,
                       drop_path_rate=spec.drop_path_rate, knn_k=spec.knn_k,
                       knn_last_n=spec.knn_last_n, sie_cameras=spec.sie_cameras, sie_coef=spec.sie_coef)
    return ReIDResNet(ibn=spec.arch == "resnet50_ibn_a", last_stride=spec.last_stride)


class ReIDModel(nn.Module):
    """A ReID network: ``backbone`` (ReIDViT or ReIDResNet), ``pool`` (TokenPool), ``head`` (BNNeck).

    ``forward(x (B, 3, H, W) float, camids (B,) int64 | None)``:
      * ``train()`` mode: ``(logits (B, num_classes) or None, feat (B, D))``, feat before the BN;
      * ``eval()`` mode: the test feature (B, D), before or after the BN by ``spec.neck_feat``.
    Features are not L2-normalised here; evaluation does that.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec.validate()
        self.backbone = build_backbone(spec)
        self.pool = TokenPool(spec.pool, getattr(self.backbone, "num_prefix_tokens", 0))
        self.head = BNNeck(self.backbone.embed_dim, spec.num_classes)

    @property
    def feat_dim(self) -> int:
        return self.backbone.embed_dim

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def config(self) -> dict:
        """A plain dict that rebuilds this model: ``ReIDModel.from_config(model.config)``."""
        return self.spec.to_dict()

    @classmethod
    def from_config(cls, config: dict) -> "ReIDModel":
        return cls(ModelSpec.from_dict(config))

    def global_feature(self, x: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled pre-BN feature (B, D)."""
        out = self.backbone.forward_features(x, camids)
        if out.ndim == 4:  # CNN map (B, C, h, w) -> tokens (B, h*w, C)
            out = out.flatten(2).transpose(1, 2)
        return self.pool(out)

    def forward(self, x: torch.Tensor, camids: torch.Tensor | None = None):
        feat = self.global_feature(x, camids)
        bn, logits = self.head(feat)
        if self.training:
            return logits, feat
        return bn if self.spec.neck_feat == "after" else feat


def build_model(preset: str, num_classes: int = 0, **overrides) -> ReIDModel:
    """A fresh model from a preset name (see ``reidkit models``) with field overrides.

    >>> model = build_model("vit_small_ics", num_classes=751, drop_path_rate=0.1)
    """
    return ReIDModel(get_spec(preset, num_classes, **overrides))
