"""Video re-ID models: a frame model (any ``ReIDModel``) + temporal pooling of its per-frame features.

    from reidkit.models.temporal import build_video_model
    model = build_video_model("vit_small_ics", num_classes=625, pool="attention")
    logits, feat = model.train()(clips)          # clips (B, T, 3, H, W) -> (B, C), (B, D)
    feat = model.eval()(clips)                    # (B, D) test feature of each tracklet

The frames of a clip go through the backbone as one (B*T, 3, H, W) batch and are pooled over time
into a tracklet feature *before* the BNNeck, as torchreid's video models do (``pool`` after the
backbone, then the classifier). A single frame (T = 1) gives exactly the frame model's own output,
so the same network embeds an image query and a tracklet gallery.

Temporal pooling (``TemporalPool``), all with an optional (B, T) mask of the valid frames:
  * ``avg``: the mean of the frame features (torchreid's ``avg``);
  * ``max``: the element-wise maximum (torchreid's ``max``);
  * ``attention``: softmax-weighted mean with per-frame scores ``w2 . tanh(W1 f_t + b1)`` (a small
    MLP of width D/8). ``w2`` starts at zero, so an untrained attention pool *is* average pooling
    and training moves it away from there only where that helps.

Files: ``save_video_model`` / ``load_video_model`` write one ``.safetensors`` with the weights and
the JSON config (the frame model's spec + the pooling) in its metadata, like ``save_model``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from reidkit.models.reid_model import ReIDModel, build_model

POOLS = ("avg", "max", "attention")
FORMAT = "reidkit.video_model/1"


class TemporalPool(nn.Module):
    """(B, T, D) frame features [+ (B, T) bool mask of valid frames] -> (B, D) tracklet features."""

    def __init__(self, mode: str = "avg", dim: int = 0, hidden: int | None = None):
        super().__init__()
        if mode not in POOLS:
            raise ValueError(f"unknown temporal pooling {mode!r}; expected one of {', '.join(POOLS)}")
        self.mode = mode
        if mode == "attention":
            if dim < 1:
                raise ValueError("attention pooling needs the feature dimension (dim >= 1)")
            hidden = hidden or max(8, dim // 8)
            self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
            nn.init.zeros_(self.score[2].weight)
            nn.init.zeros_(self.score[2].bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 3:
            raise ValueError(f"temporal pooling needs (B, T, D) frame features, got shape {tuple(x.shape)}")
        if mask is not None and not bool(mask.any(1).all()):
            raise ValueError("every tracklet needs at least one valid frame (mask row is all False)")
        if self.mode == "avg":
            if mask is None:
                return x.mean(1)
            m = mask.to(x.dtype).unsqueeze(2)
            return (x * m).sum(1) / m.sum(1)
        if self.mode == "max":
            return x.amax(1) if mask is None else x.masked_fill(~mask.unsqueeze(2), float("-inf")).amax(1)
        s = self.score(x).squeeze(2)  # (B, T)
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        w = torch.softmax(s.float(), dim=1).to(x.dtype)
        return torch.einsum("bt,btd->bd", w, x)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class VideoReIDModel(nn.Module):
    """``frame_model`` (a ``ReIDModel``) -> ``temporal`` pooling -> the frame model's BNNeck.

    ``forward(x, camids=None, mask=None)``: ``x`` (B, T, 3, H, W) clips or (B, 3, H, W) images
    (T = 1), ``camids`` (B,) per clip, ``mask`` (B, T) bool of the real frames (padding False).
      * ``train()``: ``(logits (B, C) or None, feat (B, D))``, feat = pooled pre-BN feature;
      * ``eval()``: the test feature (B, D), before or after the BN by the frame model's ``neck_feat``.
    """

    def __init__(self, frame_model: ReIDModel, pool: str = "avg"):
        super().__init__()
        self.frame_model = frame_model
        self.temporal = TemporalPool(pool, frame_model.feat_dim)

    @property
    def feat_dim(self) -> int:
        return self.frame_model.feat_dim

    @property
    def num_classes(self) -> int:
        return self.frame_model.num_classes

    @property
    def config(self) -> dict:
        return {"frame_model": self.frame_model.config, "pool": self.temporal.mode}

    @classmethod
    def from_config(cls, config: dict) -> "VideoReIDModel":
        return cls(ReIDModel.from_config(config["frame_model"]), config.get("pool", "avg"))

    def frame_features(self, frames: torch.Tensor, camids: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 3, H, W) frames -> (N, D) pre-BN frame features (what the temporal pooling consumes)."""
        return self.frame_model.global_feature(frames, camids)

    def pool(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) pre-BN frame features -> (B, D) pre-BN tracklet features."""
        return self.temporal(feats, mask)

    def test_feature(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pre-BN (B, D) pooled features -> the eval-mode output (after the BN if ``neck_feat='after'``)."""
        if self.frame_model.spec.neck_feat != "after":
            return pooled
        return self.frame_model.head(pooled)[0]

    def forward(self, x: torch.Tensor, camids: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        if x.ndim == 4:
            x = x.unsqueeze(1)
        if x.ndim != 5:
            raise ValueError(f"a video model takes (B, T, 3, H, W) clips or (B, 3, H, W) images, got {tuple(x.shape)}")
        b, t = x.shape[:2]
        cams = None if camids is None else camids.repeat_interleave(t)
        feats = self.frame_features(x.flatten(0, 1), cams).view(b, t, -1)
        pooled = self.pool(feats, mask)
        bn, logits = self.frame_model.head(pooled)
        if self.training:
            return logits, pooled
        return bn if self.frame_model.spec.neck_feat == "after" else pooled


def build_video_model(preset: str, num_classes: int = 0, pool: str = "avg", **overrides) -> VideoReIDModel:
    """A fresh video model from a frame-model preset (see ``reidkit models``) and a pooling mode."""
    return VideoReIDModel(build_model(preset, num_classes, **overrides), pool)


def save_video_model(model: VideoReIDModel, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Weights + JSON config in one safetensors file, written atomically."""
    from reidkit.models.model_file import save_with_config

    if not isinstance(model, VideoReIDModel):
        raise TypeError(f"save_video_model needs a VideoReIDModel, got {type(model).__name__}")
    return save_with_config(model, path, FORMAT, metadata)


def load_video_model(path: str | Path, map_location: str = "cpu") -> VideoReIDModel:
    """Rebuild a model written by ``save_video_model`` (returned in eval mode)."""
    from reidkit.models.model_file import ModelFileError, load_weights_exactly, read_metadata

    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ModelFileError(f"{path}: not a reidkit video model (format {meta.get('format')!r}); "
                             "image models load with reidkit.models.load_model")
    return load_weights_exactly(VideoReIDModel.from_config(json.loads(meta["config"])), path, map_location)


__all__ = ["POOLS", "TemporalPool", "VideoReIDModel", "build_video_model", "save_video_model", "load_video_model"]
