"""Scene textures, one family per domain: street, brick, park, indoor.

Each camera renders its scene once (a texture larger than the image) and every image is a
random crop of it, so images of one camera share a background and images of two cameras do
not. Textures are numpy arrays (H, W, 3) uint8.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

FAMILIES = ("street", "brick", "park", "indoor")


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1], (h, w) float32: random cells upsampled bilinearly."""
    ch, cw = max(2, h * cells // max(h, w)), max(2, w * cells // max(h, w))
    small = (rng.random((ch, cw)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR), np.float32) / 255.0


def _mix(a, b, t):
    return np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t


def _street(rng, h, w, tint):
    img = np.empty((h, w, 3), np.float32)
    horizon = int(h * rng.uniform(0.35, 0.6))
    facade = _mix(tint, (150, 150, 150), 0.4)
    img[:horizon] = facade
    # windows: a regular grid of darker panes
    step_y, step_x = int(h * rng.uniform(0.08, 0.14)), int(w * rng.uniform(0.08, 0.14))
    win = _mix(facade, (30, 40, 60), 0.6)
    for y in range(step_y // 2, horizon - step_y // 2, step_y):
        for x in range(step_x // 3, w - step_x // 2, step_x):
            img[y:y + step_y // 2, x:x + step_x // 2] = win
    pave = np.asarray((120, 118, 115), np.float32) * rng.uniform(0.8, 1.2)
    img[horizon:] = pave
    # paving joints
    joint = int(h * rng.uniform(0.05, 0.09))
    img[horizon::joint] *= 0.75
    img[horizon:, ::joint] *= 0.8
    noise = smooth_noise(rng, h, w, 24)[..., None]
    return img * (0.85 + 0.3 * noise)


def _brick(rng, h, w, tint):
    base = _mix((150, 70, 50), tint, rng.uniform(0.0, 0.5))
    img = np.empty((h, w, 3), np.float32)
    img[:] = _mix(base, (200, 195, 185), 0.55)  # mortar
    bh = max(4, int(h * rng.uniform(0.03, 0.05)))
    bw = bh * 3
    for r, y in enumerate(range(0, h, bh)):
        off = (bw // 2) * (r % 2)
        for x in range(-off, w, bw):
            shade = rng.uniform(0.8, 1.15)
            img[y + 1:y + bh - 1, max(0, x + 1):max(0, x + bw - 1)] = base * shade
    ground = int(h * rng.uniform(0.7, 0.85))
    img[ground:] = _mix((90, 90, 95), tint, 0.2)
    noise = smooth_noise(rng, h, w, 40)[..., None]
    return img * (0.85 + 0.3 * noise)


def _park(rng, h, w, tint):
    img = np.empty((h, w, 3), np.float32)
    horizon = int(h * rng.uniform(0.25, 0.45))
    yy = np.linspace(0, 1, horizon, dtype=np.float32)[:, None, None]
    img[:horizon] = _mix((150, 190, 235), (220, 235, 250), yy)
    grass = _mix((70, 140, 60), tint, 0.2)
    img[horizon:] = grass
    for _ in range(int(rng.integers(3, 7))):  # trees: dark blobs on the horizon
        cx, r = rng.uniform(0, w), rng.uniform(0.08, 0.2) * h
        ys, xs = np.ogrid[:h, :w]
        blob = ((xs - cx) / (0.6 * r)) ** 2 + ((ys - horizon) / r) ** 2 < 1.0
        img[blob] = _mix((30, 80, 35), tint, 0.1) * rng.uniform(0.8, 1.2)
    path_l, path_r = sorted(rng.uniform(0.1, 0.9, 2) * w)
    img[int(h * 0.75):, int(path_l):int(path_r) + 4] = (190, 175, 145)
    noise = smooth_noise(rng, h, w, 60)[..., None]
    return img * (0.75 + 0.5 * noise)


def _indoor(rng, h, w, tint):
    img = np.empty((h, w, 3), np.float32)
    floor = int(h * rng.uniform(0.55, 0.75))
    img[:floor] = _mix(tint, (210, 205, 190), 0.5)
    tile = max(4, int(h * rng.uniform(0.05, 0.1)))
    ys, xs = np.mgrid[0:h - floor, 0:w]
    checker = ((ys // tile + xs // tile) % 2).astype(np.float32)[..., None]
    img[floor:] = _mix((170, 165, 160), (90, 85, 80), checker)
    for _ in range(int(rng.integers(1, 4))):  # doors / panels on the wall
        x0 = int(rng.uniform(0, w * 0.8))
        pw, ph = int(w * rng.uniform(0.1, 0.25)), int(floor * rng.uniform(0.5, 0.9))
        img[floor - ph:floor, x0:x0 + pw] = _mix(tint, (60, 45, 35), 0.6)
    noise = smooth_noise(rng, h, w, 30)[..., None]
    return img * (0.9 + 0.2 * noise)


_MAKERS = {"street": _street, "brick": _brick, "park": _park, "indoor": _indoor}


def make_texture(family: str, seed: int, h: int, w: int, tint) -> np.ndarray:
    """A (h, w, 3) uint8 scene of ``family``, fully determined by ``seed``."""
    if family not in _MAKERS:
        raise ValueError(f"unknown background family {family!r}; expected one of {FAMILIES}")
    rng = np.random.default_rng(seed)
    return np.clip(_MAKERS[family](rng, h, w, tint), 0, 255).astype(np.uint8)
