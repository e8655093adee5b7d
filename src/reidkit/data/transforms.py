"""Image transforms of the ReID recipes: PIL image in, normalised (3, H, W) float32 tensor out.

Three pipelines, each exactly as the official code builds it (spec: transreid_ssl.md §5, §6.2, §10):

* ``build_train_transform`` (supervised, TransReID-SSL): **bicubic** resize -> horizontal flip
  p=0.5 -> pad 10 (zeros) -> random crop back to size -> to tensor -> normalise 0.5/0.5 ->
  random erasing p=0.5 with **per-pixel N(0, 1)** noise (timm's ``mode='pixel'``, one box).
* ``build_test_transform``: resize only (**bilinear** for supervised, bicubic for USL) + normalise.
* ``build_usl_train_transform`` (cluster-contrast): bicubic, and erasing that fills with the
  constants (0.485, 0.456, 0.406) written in *normalised* space, area up to 0.4, uniform aspect.

All randomness comes from torch's global generator, so seeding torch (per sample, as the training
loop does) makes an augmentation repeatable regardless of worker count.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

Interpolation = Literal["bicubic", "bilinear", "nearest"]

#: Fine-tuning normalisation of TransReID-SSL and cluster-contrast (``--self-norm``). DINO
#: pre-training uses ImageNet statistics instead; the mismatch is the official one (§10 item 2).
HALF = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR,
                   "nearest": InterpolationMode.NEAREST}


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive (height, width), got {tuple(size)}")
    return (h, w)


def _interp(name: str) -> InterpolationMode:
    if name not in _INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {name!r}; expected one of {sorted(_INTERPOLATIONS)}")
    return _INTERPOLATIONS[name]


class RandomErasing(torch.nn.Module):
    """Erase one random box of a normalised (C, H, W) tensor, in place of the original pixels.

    With probability ``p``: up to ``attempts`` tries to draw a box of area ``U(area) * H * W`` and
    aspect ratio (h / w) drawn log-uniformly (``log_aspect=True``, timm) or uniformly
    (cluster-contrast) from ``aspect``; the first box that fits is filled and the rest skipped.

    ``fill='pixel'`` fills every value with N(0, 1) noise (timm ``mode='pixel'``); a tuple of
    per-channel constants fills those (already in normalised space, as cluster-contrast does).
    """

    def __init__(self, p: float = 0.5, area: tuple[float, float] = (0.02, 1 / 3),
                 aspect: tuple[float, float] = (0.3, 1 / 0.3), fill: str | Sequence[float] = "pixel",
                 log_aspect: bool = True, attempts: int = 10):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"random erasing probability must be in [0, 1], got {p}")
        if not 0.0 < area[0] <= area[1] <= 1.0:
            raise ValueError(f"random erasing area must satisfy 0 < min <= max <= 1, got {area}")
        if not 0.0 < aspect[0] <= aspect[1]:
            raise ValueError(f"random erasing aspect range must satisfy 0 < min <= max, got {aspect}")
        if isinstance(fill, str) and fill != "pixel":
            raise ValueError(f"random erasing fill must be 'pixel' or per-channel constants, got {fill!r}")
        self.p, self.area, self.aspect, self.attempts = p, tuple(area), tuple(aspect), attempts
        self.fill = fill if isinstance(fill, str) else tuple(float(v) for v in fill)
        self.log_aspect = log_aspect

    def _draw_aspect(self) -> float:
        lo, hi = self.aspect
        if self.log_aspect:
            return math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(()).item())
        return lo + (hi - lo) * torch.rand(()).item()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if torch.rand(()).item() >= self.p:
            return img
        c, height, width = img.shape
        for _ in range(self.attempts):
            target = (self.area[0] + (self.area[1] - self.area[0]) * torch.rand(()).item()) * height * width
            ratio = self._draw_aspect()
            h = int(round(math.sqrt(target * ratio)))
            w = int(round(math.sqrt(target / ratio)))
            if 0 < h < height and 0 < w < width:
                top = int(torch.randint(0, height - h + 1, ()).item())
                left = int(torch.randint(0, width - w + 1, ()).item())
                if self.fill == "pixel":
                    img[:, top:top + h, left:left + w] = torch.randn((c, h, w), dtype=img.dtype)
                else:
                    img[:, top:top + h, left:left + w] = torch.tensor(self.fill[:c], dtype=img.dtype)[:, None, None]
                return img
        return img

    def extra_repr(self) -> str:
        return f"p={self.p}, area={self.area}, aspect={self.aspect}, fill={self.fill!r}, log_aspect={self.log_aspect}"


def build_resize(size: int | Sequence[int], interpolation: Interpolation = "bicubic") -> T.Resize:
    """The deterministic first step of every pipeline (cacheable: see ``split_resize``)."""
    return T.Resize(_size(size), interpolation=_interp(interpolation), antialias=True)


def build_train_transform(size: int | Sequence[int] = (256, 128), *, interpolation: Interpolation = "bicubic",
                          hflip: float = 0.5, pad: int = 10, erasing: float = 0.5,
                          erasing_area: tuple[float, float] = (0.02, 1 / 3),
                          erasing_aspect: tuple[float, float] = (0.3, 1 / 0.3),
                          erasing_fill: str | Sequence[float] = "pixel", erasing_log_aspect: bool = True,
                          mean: Sequence[float] = HALF, std: Sequence[float] = HALF) -> T.Compose:
    """Supervised train pipeline (defaults = TransReID-SSL): PIL -> (3, H, W) float32, ~[-1, 1].

    ``size`` is (height, width) in pixels. ``pad=0`` drops pad+crop, ``erasing=0`` drops erasing.
    """
    h, w = _size(size)
    steps: list = [build_resize((h, w), interpolation)]
    if hflip > 0:
        steps.append(T.RandomHorizontalFlip(p=hflip))
    if pad > 0:
        steps += [T.Pad(pad, fill=0), T.RandomCrop((h, w))]
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    if erasing > 0:
        steps.append(RandomErasing(erasing, erasing_area, erasing_aspect, erasing_fill, erasing_log_aspect))
    return T.Compose(steps)


def build_test_transform(size: int | Sequence[int] = (256, 128), interpolation: Interpolation = "bilinear",
                         mean: Sequence[float] = HALF, std: Sequence[float] = HALF) -> T.Compose:
    """Test pipeline: resize (bilinear, torchvision's default as the official test code) + normalise."""
    return T.Compose([build_resize(size, interpolation), T.ToTensor(), T.Normalize(mean, std)])


def build_usl_train_transform(size: int | Sequence[int] = (256, 128)) -> T.Compose:
    """Cluster-contrast train pipeline (§6.2 item 8): bicubic, constant-fill erasing, area 0.02-0.4."""
    # cluster-contrast's own erasing: up to 100 tries, uniform aspect in [0.3, 1/0.3]
    base = build_train_transform(size, interpolation="bicubic", erasing=0)
    return T.Compose(list(base.transforms) + [
        RandomErasing(0.5, (0.02, 0.4), (0.3, 1 / 0.3), fill=IMAGENET_MEAN, log_aspect=False, attempts=100)])


def build_usl_test_transform(size: int | Sequence[int] = (256, 128)) -> T.Compose:
    """Cluster-contrast test / feature-extraction pipeline: bicubic resize + 0.5 normalisation."""
    return build_test_transform(size, interpolation="bicubic")


def split_resize(transform: T.Compose) -> tuple[T.Resize | None, T.Compose]:
    """``(resize, rest)`` of a pipeline built here: the resize is deterministic, so a training
    loop may cache resized images and apply only ``rest`` per sample (exactly the same result)."""
    steps = list(transform.transforms)
    if steps and isinstance(steps[0], T.Resize):
        return steps[0], T.Compose(steps[1:])
    return None, transform
