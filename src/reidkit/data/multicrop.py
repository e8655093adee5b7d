"""DINO's person-shaped multi-crop augmentation (TransReID-SSL pre-training recipe).

One image becomes ``2 + local_crops_number`` views: two *global* crops (256x128, scale 0.4-1.0)
that both the student and the teacher see, and small *local* crops (128x64, scale 0.05-0.4) that
only the student sees. Photometric augmentations follow the paper exactly:

  * every view: horizontal flip p=0.5, colour jitter (0.4, 0.4, 0.2, 0.1) p=0.8, grayscale p=0.2;
  * Gaussian blur (radius U(0.1, 2.0)): p=1.0 on global view 1, 0.1 on global view 2, 0.5 on locals;
  * solarize (threshold 128): p=0.2 on global view 2 only;
  * ImageNet mean/std normalisation (the paper's pre-training choice; fine-tuning uses 0.5/0.5,
    and we keep that mismatch on purpose to match the published numbers).

All randomness comes from an explicit ``random.Random`` passed in by the caller, never from the
global RNGs. The pre-training dataset seeds it from ``(seed, epoch, image index)``, so the views
of an image are the same whichever worker loads it and however often a run is resumed.
"""
from __future__ import annotations

import math
import random

import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageFilter, ImageOps

from reidkit.data.multicrop_config import IMAGENET_MEAN, IMAGENET_STD, MultiCropConfig  # noqa: F401 (re-exported)


def random_resized_crop_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float],
                            rng: random.Random) -> tuple[int, int, int, int]:
    """Crop box ``(left, top, right, bottom)`` drawn like torchvision's ``RandomResizedCrop``.

    Area fraction uniform in ``scale``, aspect ratio (w/h) log-uniform in ``ratio``; 10 tries,
    then a centre crop clamped to ``ratio``.
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = rng.randint(0, height - h)
            left = rng.randint(0, width - w)
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


def color_jitter(img: Image.Image, strength: tuple[float, float, float, float], rng: random.Random) -> Image.Image:
    """Brightness, contrast, saturation, hue in a random order (torchvision's ColorJitter)."""
    b, c, s, h = strength
    ops = [
        lambda im: TF.adjust_brightness(im, rng.uniform(max(0.0, 1 - b), 1 + b)),
        lambda im: TF.adjust_contrast(im, rng.uniform(max(0.0, 1 - c), 1 + c)),
        lambda im: TF.adjust_saturation(im, rng.uniform(max(0.0, 1 - s), 1 + s)),
        lambda im: TF.adjust_hue(im, rng.uniform(-h, h)),
    ]
    rng.shuffle(ops)
    for op in ops:
        img = op(img)
    return img


class MultiCrop:
    """``MultiCrop(cfg)(pil_image, rng) -> list`` of ``cfg.num_views`` tensors, each (3, H, W) float32.

    Views 0 and 1 are global (``cfg.global_size``), the rest local (``cfg.local_size``).
    """

    def __init__(self, cfg: MultiCropConfig | None = None):
        self.cfg = cfg or MultiCropConfig()
        self._mean = torch.tensor(self.cfg.mean).view(3, 1, 1)
        self._std = torch.tensor(self.cfg.std).view(3, 1, 1)

    def __call__(self, img: Image.Image, rng: random.Random) -> list[torch.Tensor]:
        c = self.cfg
        img = img.convert("RGB") if img.mode != "RGB" else img
        views = [
            self._view(img, c.global_size, c.global_scale, c.blur_p[0], 0.0, rng),
            self._view(img, c.global_size, c.global_scale, c.blur_p[1], c.solarize_p, rng),
        ]
        for _ in range(c.local_crops_number):
            views.append(self._view(img, c.local_size, c.local_scale, c.blur_p[2], 0.0, rng))
        return views

    def _view(self, img: Image.Image, size: tuple[int, int], scale: tuple[float, float], blur_p: float,
              solarize_p: float, rng: random.Random) -> torch.Tensor:
        c = self.cfg
        box = random_resized_crop_box(img.width, img.height, scale, c.ratio, rng)
        # PIL crops and resizes in one pass (box=), cheaper than crop() then resize()
        out = img.resize((size[1], size[0]), Image.Resampling.BICUBIC, box=box)
        if rng.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if rng.random() < c.color_jitter_p:
            out = color_jitter(out, c.color_jitter, rng)
        if rng.random() < c.grayscale_p:
            out = out.convert("L").convert("RGB")
        if rng.random() < blur_p:
            out = out.filter(ImageFilter.GaussianBlur(radius=rng.uniform(*c.blur_radius)))
        if rng.random() < solarize_p:
            out = ImageOps.solarize(out, threshold=128)
        return (TF.pil_to_tensor(out).float().div_(255) - self._mean) / self._std
