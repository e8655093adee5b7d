"""Irrelevant images for the pre-training pool: what a crawled person pool also contains.

Three kinds, each a failure of a real detector or crawler:
  * ``scene``    a camera's scene with objects but no person (false detection);
  * ``object``   a close-up of a thing: vehicle, sign, bin (wrong class);
  * ``offstyle`` an image from another world: abstract art, posters, landscapes (wrong source).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from reidkit.data.synth.render import SUPERSAMPLE, apply_camera, draw_occluder, scene_crop
from reidkit.data.synth.styles import Camera

CLUTTER_KINDS = ("scene", "object", "offstyle")


def _color(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))  # type: ignore[return-value]


def _object(canvas: Image.Image, rng: np.random.Generator) -> None:
    W, H = canvas.size
    d = ImageDraw.Draw(canvas)
    kind = int(rng.integers(3))
    col = _color(rng, 20, 235)
    if kind == 0:  # vehicle seen close: body, windows, wheels
        top = rng.uniform(0.2, 0.5) * H
        d.rounded_rectangle([-0.2 * W, top, 1.2 * W, top + 0.4 * H], radius=0.1 * W, fill=col)
        d.rectangle([0.05 * W, top + 0.04 * H, 0.95 * W, top + 0.15 * H], fill=(40, 50, 60))
        for x in (0.15, 0.85):
            d.ellipse([(x - 0.2) * W, top + 0.32 * H, (x + 0.2) * W, top + 0.52 * H], fill=(20, 20, 20))
    elif kind == 1:  # a road sign on a post
        d.rectangle([0.45 * W, 0.3 * H, 0.55 * W, H], fill=(120, 120, 120))
        cy, r = rng.uniform(0.15, 0.35) * H, rng.uniform(0.3, 0.45) * W
        d.ellipse([0.5 * W - r, cy - r, 0.5 * W + r, cy + r], fill=col, outline=(250, 250, 250), width=3)
    else:  # a bin or a box
        w, h = rng.uniform(0.5, 0.9) * W, rng.uniform(0.3, 0.6) * H
        x0, y0 = (W - w) / 2, H - h - rng.uniform(0, 0.1) * H
        d.rectangle([x0, y0, x0 + w, y0 + h], fill=col)
        d.rectangle([x0 - 2, y0, x0 + w + 2, y0 + 0.08 * H], fill=tuple(int(c * 0.7) for c in col))


def _offstyle(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    SW, SH = size
    kind = int(rng.integers(3))
    if kind == 0:  # abstract art: saturated random shapes
        img = Image.new("RGB", size, _color(rng))
        d = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(6, 20))):
            x, y = rng.uniform(0, SW), rng.uniform(0, SH)
            r = rng.uniform(0.05, 0.4) * SW
            box = [x - r, y - r, x + r, y + r]
            (d.ellipse if rng.random() < 0.5 else d.rectangle)(box, fill=_color(rng))
        return img
    if kind == 1:  # landscape: sky gradient over hills
        t = np.linspace(0, 1, SH, dtype=np.float32)[:, None, None]
        sky = np.asarray(_color(rng, 100), np.float32) * (1 - t) + np.asarray(_color(rng, 150), np.float32) * t
        arr = np.broadcast_to(sky, (SH, SW, 3)).copy()
        xs = np.arange(SW)
        for level in (0.5, 0.65, 0.8):
            hill = SH * (level + 0.08 * np.sin(xs / SW * rng.uniform(2, 8) + rng.uniform(0, 6)))
            below = np.arange(SH)[:, None] > hill[None, :]
            arr[below] = np.asarray(_color(rng, 0, 160), np.float32)
        return Image.fromarray(arr.astype(np.uint8))
    # poster / text page: light background, dark lines of "text"
    img = Image.new("RGB", size, _color(rng, 200))
    d = ImageDraw.Draw(img)
    ink = _color(rng, 0, 80)
    y = rng.uniform(0.03, 0.1) * SH
    while y < SH:
        d.rectangle([0.1 * SW, y, rng.uniform(0.5, 0.9) * SW, y + 0.02 * SH], fill=ink)
        y += rng.uniform(0.04, 0.08) * SH
    return img.filter(ImageFilter.GaussianBlur(1))


def render_clutter(kind: str, camera: Camera, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """One irrelevant (H, W) = ``size`` image of ``kind``; ``scene`` and ``object`` use ``camera``."""
    H, W = size
    SH, SW = H * SUPERSAMPLE, W * SUPERSAMPLE
    if kind == "offstyle":
        return _offstyle((SW, SH), rng).reduce(SUPERSAMPLE)
    canvas = scene_crop(camera, rng, SH, SW)
    if kind == "scene":
        for _ in range(int(rng.integers(1, 3))):
            draw_occluder(canvas, rng, None)
    elif kind == "object":
        _object(canvas, rng)
    else:
        raise ValueError(f"unknown clutter kind {kind!r}; expected one of {CLUTTER_KINDS}")
    return apply_camera(canvas.reduce(SUPERSAMPLE), camera, rng)
