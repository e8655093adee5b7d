"""DINO's person-shaped multi-crop, batched on the training device from uint8 images.

The same recipe as ``data/multicrop.py`` (2 global 256x128 crops at scale 0.4-1, 8 local 128x64 at
0.05-0.4; flip 0.5; colour jitter (0.4, 0.4, 0.2, 0.1) p=0.8 in random order; grey p=0.2; Gaussian
blur p = 1.0 / 0.1 / 0.5 with sigma U(0.1, 2); solarise p=0.2 on global view 2; ImageNet
normalisation) with the work split in two:

* **worker** (``MultiCropDraws``): the image resized once to a fixed uint8 *canvas* (the global
  size), plus every view's random draws, taken from the caller's ``random.Random`` in exactly the
  order ``MultiCrop`` takes them -- so the same ``(seed, epoch, index)`` gives the same crop boxes,
  flips, jitter factors and order, grey, blur radii and solarise decisions;
* **device** (``DeviceMultiCrop``): crop + resize as one ``grid_sample`` per view size (bicubic),
  then flip, jitter, grey, blur (per-sample separable kernels in one grouped conv), solarise and
  normalisation as batched tensor ops.

The pixels are not PIL's (PIL quantises to uint8 after every op, blurs with box passes and
antialiases its resize); the parameters are the same. ``tests/data/test_device_multicrop.py``
compares the two paths op by op and by per-view distributions.
"""
from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from reidkit.data.multicrop import MultiCropConfig, random_resized_crop_box

# per-view parameter columns
_X0, _Y0, _X1, _Y1, _FLIP, _JIT, _O0, _F0, _GREY, _SIGMA, _SOL = 0, 1, 2, 3, 4, 5, 6, 10, 14, 15, 16
NUM_PARAMS = 17
_NEUTRAL = (1.0, 1.0, 1.0, 0.0)   # brightness, contrast, saturation, hue factors that change nothing


def draw_view(width: int, height: int, scale: tuple[float, float], blur_p: float, solarize_p: float,
              cfg: MultiCropConfig, rng: random.Random) -> list[float]:
    """One view's draws, in ``MultiCrop._view``'s order: a row of ``NUM_PARAMS`` floats."""
    row = [0.0] * NUM_PARAMS
    left, top, right, bottom = random_resized_crop_box(width, height, scale, cfg.ratio, rng)
    row[_X0:_Y1 + 1] = [left / width, top / height, right / width, bottom / height]
    row[_FLIP] = float(rng.random() < 0.5)
    row[_O0:_O0 + 4] = [0, 1, 2, 3]
    row[_F0:_F0 + 4] = _NEUTRAL
    if rng.random() < cfg.color_jitter_p:
        row[_JIT] = 1.0
        order = [0, 1, 2, 3]
        rng.shuffle(order)          # multicrop.color_jitter shuffles its 4 ops, then draws as it applies
        b, c, s, h = cfg.color_jitter
        ranges = [(max(0.0, 1 - b), 1 + b), (max(0.0, 1 - c), 1 + c), (max(0.0, 1 - s), 1 + s), (-h, h)]
        for o in order:
            row[_F0 + o] = rng.uniform(*ranges[o])
        row[_O0:_O0 + 4] = order
    row[_GREY] = float(rng.random() < cfg.grayscale_p)
    if rng.random() < blur_p:
        row[_SIGMA] = rng.uniform(*cfg.blur_radius)
    row[_SOL] = float(rng.random() < solarize_p)
    return row


class MultiCropDraws:
    """Worker side: ``(pil_image, rng) -> (canvas uint8 (H, W, 3) tensor, params (V, NUM_PARAMS) float64)``."""

    def __init__(self, cfg: MultiCropConfig | None = None, canvas: tuple[int, int] | None = None):
        self.cfg = cfg or MultiCropConfig()
        self.canvas = tuple(canvas or self.cfg.global_size)

    def __call__(self, img: Image.Image, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg
        img = img.convert("RGB") if img.mode != "RGB" else img
        w, h = img.size
        rows = [draw_view(w, h, c.global_scale, c.blur_p[0], 0.0, c, rng),
                draw_view(w, h, c.global_scale, c.blur_p[1], c.solarize_p, c, rng)]
        rows += [draw_view(w, h, c.local_scale, c.blur_p[2], 0.0, c, rng) for _ in range(c.local_crops_number)]
        if (h, w) != self.canvas:
            img = img.resize((self.canvas[1], self.canvas[0]), Image.Resampling.BICUBIC)
        canvas = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))
        return canvas, torch.tensor(rows, dtype=torch.float64)


# --------------------------------------------------------------------------- batched tensor ops, x in [0, 1]

def _grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma with PIL's ITU-R 601 weights."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (f * x + (1 - f) * other).clamp_(0, 1)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    d = delta.clamp_min(1e-12)
    h = torch.where(maxc == r, ((g - b) / d) % 6, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4))
    h = torch.where(delta > 0, h / 6, torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], 1)     # r, g, b
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * (torch.minimum(k, 4 - k).clamp(0, 1))


def adjust(x: torch.Tensor, op: int, f: torch.Tensor) -> torch.Tensor:
    """One colour-jitter op with a per-sample factor ``f`` (B,): 0 brightness, 1 contrast, 2 saturation, 3 hue."""
    f4 = f.view(-1, 1, 1, 1).to(x.dtype)
    if op == 0:
        return (x * f4).clamp_(0, 1)
    if op == 1:
        return _blend(x, _grey(x).mean((2, 3), keepdim=True), f4)
    if op == 2:
        return _blend(x, _grey(x), f4)
    hsv = _rgb_to_hsv(x)
    hsv = torch.cat([(hsv[:, :1] + f4) % 1.0, hsv[:, 1:]], 1)
    return _hsv_to_rgb(hsv)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float = 2.0) -> torch.Tensor:
    """Separable Gaussian blur, one sigma per sample (``sigma <= 0``: unchanged), reflect borders."""
    b, c, h, w = x.shape
    radius = max(1, int(math.ceil(3 * max_sigma)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).clamp_min(1e-6)[:, None]
    k = torch.exp(-0.5 * (t[None] / s) ** 2)
    k = torch.where((sigma > 0)[:, None], k / k.sum(1, keepdim=True), (t == 0).to(x.dtype)[None].expand_as(k))
    k = k.repeat_interleave(c, 0)                                               # (B*C, K)
    y = x.reshape(1, b * c, h, w)
    pad_h, pad_w = min(radius, h - 1), min(radius, w - 1)
    y = F.pad(y, (0, 0, pad_h, pad_h), mode="reflect")
    y = F.conv2d(y, k[:, None, radius - pad_h:radius + pad_h + 1, None], groups=b * c)
    y = F.pad(y, (pad_w, pad_w, 0, 0), mode="reflect")
    y = F.conv2d(y, k[:, None, None, radius - pad_w:radius + pad_w + 1], groups=b * c)
    return y.reshape(b, c, h, w)


def crop_resize(canvas: torch.Tensor, params: torch.Tensor, size: tuple[int, int],
                mode: str = "bicubic") -> torch.Tensor:
    """(B, 3, H, W) float canvases, (B, NUM_PARAMS) boxes -> (B, 3, *size) crops, flipped where drawn."""
    b = canvas.shape[0]
    x0, y0, x1, y1 = (params[:, i].to(canvas.dtype) for i in (_X0, _Y0, _X1, _Y1))
    flip = params[:, _FLIP] > 0
    x0, x1 = torch.where(flip, x1, x0), torch.where(flip, x0, x1)
    # output pixel centres -> canvas coordinates in [-1, 1] (align_corners=False convention)
    u = (torch.arange(size[1], device=canvas.device, dtype=canvas.dtype) + 0.5) / size[1]
    v = (torch.arange(size[0], device=canvas.device, dtype=canvas.dtype) + 0.5) / size[0]
    gx = 2 * (x0[:, None] + u[None] * (x1 - x0)[:, None]) - 1                # (B, W)
    gy = 2 * (y0[:, None] + v[None] * (y1 - y0)[:, None]) - 1                # (B, H)
    grid = torch.stack([gx[:, None, :].expand(b, size[0], size[1]), gy[:, :, None].expand(b, size[0], size[1])], -1)
    out = F.grid_sample(canvas, grid, mode=mode, padding_mode="border", align_corners=False)
    return out.clamp_(0, 1)


class DeviceMultiCrop(torch.nn.Module):
    """``(canvases (B, H, W, 3) uint8, params (B, V, NUM_PARAMS))`` on any device -> list of V views,
    each (B, 3, h, w) float32, normalised; views 0-1 global, the rest local (as ``MultiCrop``)."""

    def __init__(self, cfg: MultiCropConfig | None = None):
        super().__init__()
        self.cfg = cfg or MultiCropConfig()
        self.register_buffer("mean", torch.tensor(self.cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.cfg.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, canvases: torch.Tensor, params: torch.Tensor) -> list[torch.Tensor]:
        c = self.cfg
        b, v = params.shape[:2]
        x = canvases.permute(0, 3, 1, 2).float().div_(255)
        groups = [(range(0, 2), c.global_size), (range(2, v), c.local_size)]
        views: list[torch.Tensor] = [None] * v  # type: ignore[list-item]
        for idx, size in groups:
            n = len(idx)
            if not n:
                continue
            p = params[:, idx.start:idx.stop].transpose(0, 1).reshape(n * b, -1).to(x.device)   # view-major
            out = self._augment(crop_resize(x.repeat(n, 1, 1, 1), p, size), p)
            for k, view in zip(idx, out.split(b)):
                views[k] = view
        return views

    def _augment(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        order, factors = p[:, _O0:_O0 + 4].long(), p[:, _F0:_F0 + 4]
        jitter = p[:, _JIT] > 0
        for step in range(4):               # at each step every jittered sample runs its own op
            for op in range(4):
                idx = ((order[:, step] == op) & jitter).nonzero().squeeze(1)
                if len(idx):
                    x[idx] = adjust(x[idx], op, factors[idx, op])
        grey = (p[:, _GREY] > 0).view(-1, 1, 1, 1)
        x = torch.where(grey, _grey(x).expand_as(x), x)
        if bool((p[:, _SIGMA] > 0).any()):
            x = gaussian_blur(x, p[:, _SIGMA], max(self.cfg.blur_radius))
        sol = (p[:, _SOL] > 0).view(-1, 1, 1, 1)
        x = torch.where(sol & (x >= 128 / 255), 1 - x, x)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


def collate(batch):
    """``[((canvas, params), index), ...]`` -> ``((canvases (B, H, W, 3), params (B, V, P)), indices)``."""
    canvases = torch.stack([b[0][0] for b in batch])
    params = torch.stack([b[0][1] for b in batch])
    return (canvases, params), torch.tensor([b[1] for b in batch], dtype=torch.int64)


__all__ = ["MultiCropDraws", "DeviceMultiCrop", "draw_view", "crop_resize", "gaussian_blur", "adjust", "collate",
           "NUM_PARAMS"]
