"""Named model presets: a :class:`ModelSpec` per name, overridable field by field.

``vit_small`` / ``vit_base`` are ViT-S/16 and ViT-B/16 at 256x128 (``_384``: 384x128), with the
patchify stem, ``_ics`` the IBN conv stem and ``_conv`` the scaled-ReLU conv stem. ``vit_tiny*``
(192 wide, 6 deep, 3 heads, 128x64) is the CPU demo size; ``vit_micro*`` (64 wide, 2 deep,
64x32) is for tests. The ResNets are the CNN baselines at 256x128.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


class ModelConfigError(ValueError):
    """An unknown preset or a bad model override."""


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model (saved in every model file as JSON)."""

    arch: str = "vit"                       # 'vit' | 'resnet50' | 'resnet50_ibn_a'
    img_size: tuple[int, int] = (256, 128)  # (H, W) the position embeddings are made for
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    patch_size: int = 16
    stride: int | None = None               # patchify only; < patch_size gives overlapping patches
    stem: str = "patchify"                  # 'patchify' | 'conv' | 'ics'
    drop_path_rate: float = 0.1
    knn_k: int | float | None = None        # top-k attention: count or ratio; None = dense
    knn_last_n: int | None = None           # k-NN only in the last n blocks (None = all)
    sie_cameras: int = 0                    # > 0 adds the SIE camera embedding
    sie_coef: float = 3.0
    pool: str = "cls"                       # 'cls' | 'avg' | 'gem'
    neck_feat: str = "before"               # test feature before or after the BNNeck's BN
    num_classes: int = 0
    last_stride: int = 1                    # ResNets
    extra: dict = field(default_factory=dict)  # free-form notes (e.g. the preset name)

    def validate(self) -> "ModelSpec":
        if self.arch not in ("vit", "resnet50", "resnet50_ibn_a"):
            raise ModelConfigError(f"unknown arch {self.arch!r}")
        if self.neck_feat not in ("before", "after"):
            raise ModelConfigError(f"neck_feat must be 'before' or 'after', got {self.neck_feat!r}")
        if self.pool not in ("cls", "avg", "gem"):
            raise ModelConfigError(f"pool must be cls, avg or gem, got {self.pool!r}")
        if self.arch != "vit" and self.pool == "cls":
            raise ModelConfigError(f"{self.arch} has no CLS token: use pool='avg' or 'gem'")
        if self.arch != "vit" and self.sie_cameras:
            raise ModelConfigError("SIE camera embedding exists only for ViTs")
        if self.stem not in ("patchify", "conv", "ics"):
            raise ModelConfigError(f"stem must be patchify, conv or ics, got {self.stem!r}")
        if self.num_classes < 0:
            raise ModelConfigError(f"num_classes must be >= 0, got {self.num_classes}")
        self.img_size = (int(self.img_size[0]), int(self.img_size[1]))
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["img_size"] = list(self.img_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ModelConfigError(f"unknown model config keys {unknown}; known: {sorted(names)}")
        d = dict(d)
        if "img_size" in d:
            d["img_size"] = tuple(d["img_size"])
        return cls(**d).validate()


def _vit(width: str, stem: str, h: int, w: int = 128) -> ModelSpec:
    dims = {"small": (384, 12, 6), "base": (768, 12, 12), "tiny": (192, 6, 3), "micro": (64, 2, 2)}
    d, depth, heads = dims[width]
    return ModelSpec(arch="vit", img_size=(h, w), embed_dim=d, depth=depth, num_heads=heads, stem=stem)


def _build_presets() -> dict[str, ModelSpec]:
    presets: dict[str, ModelSpec] = {}
    for width in ("small", "base"):
        for stem in ("patchify", "ics", "conv"):
            suffix = "" if stem == "patchify" else f"_{stem}"
            presets[f"vit_{width}{suffix}"] = _vit(width, stem, 256)
            presets[f"vit_{width}{suffix}_384"] = _vit(width, stem, 384)
    for stem in ("patchify", "ics", "conv"):
        suffix = "" if stem == "patchify" else f"_{stem}"
        presets[f"vit_tiny{suffix}"] = _vit("tiny", stem, 128, 64)
        presets[f"vit_micro{suffix}"] = dataclasses.replace(_vit("micro", stem, 64, 32), drop_path_rate=0.0)
    presets["resnet50"] = ModelSpec(arch="resnet50", embed_dim=2048, pool="avg", drop_path_rate=0.0)
    presets["resnet50_ibn_a"] = ModelSpec(arch="resnet50_ibn_a", embed_dim=2048, pool="avg",
                                          drop_path_rate=0.0)
    return presets


PRESETS: dict[str, ModelSpec] = _build_presets()


def get_spec(preset: str, num_classes: int = 0, **overrides) -> ModelSpec:
    """The preset's spec with ``num_classes`` and field overrides applied (unknown fields are errors)."""
    if preset not in PRESETS:
        raise ModelConfigError(f"unknown model preset {preset!r}; available: {', '.join(PRESETS)}")
    names = {f.name for f in dataclasses.fields(ModelSpec)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ModelConfigError(f"unknown model override(s) {unknown}; known: {sorted(names)}")
    spec = dataclasses.replace(PRESETS[preset], num_classes=num_classes, **overrides)
    spec.extra = {**spec.extra, "preset": preset}
    return spec.validate()
