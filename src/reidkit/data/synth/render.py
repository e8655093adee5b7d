"""Drawing one pedestrian crop: scene crop, person, occluder, then the camera's optics.

Shapes are drawn with PIL at twice the output size and box-reduced (cheap anti-aliasing).
Everything random comes from the ``rng`` passed in, so one seed gives one image, byte for byte.
Units: ``u`` is the person's height in canvas pixels; body parts are fractions of ``u``.
"""
from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from reidkit.data.synth.backgrounds import make_texture
from reidkit.data.synth.identity import Identity
from reidkit.data.synth.styles import VIEWS, Camera

SUPERSAMPLE = 2


@functools.lru_cache(maxsize=64)
def _scene(family: str, seed: int, h: int, w: int, tint: tuple) -> np.ndarray:
    return make_texture(family, seed, h, w, tint)


def scene_texture(camera: Camera, h: int, w: int) -> np.ndarray:
    """The camera's whole scene (H, W, 3) uint8, cached, from which (h, w) windows are cut."""
    return _scene(camera.background, camera.bg_seed, int(h * 1.4), int(w * 2.5), camera.bg_tint)


def scene_crop(camera: Camera, rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """A random (h, w) window of the camera's scene, slightly rescaled (zoom jitter)."""
    tex = scene_texture(camera, h, w)
    y = int(rng.integers(0, tex.shape[0] - h + 1))
    x = int(rng.integers(0, tex.shape[1] - w + 1))
    return Image.fromarray(tex[y:y + h, x:x + w])


def _shade(color, f: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, c * f))) for c in color)  # type: ignore[return-value]


def _pattern(ident: Identity, view: str, box: tuple[int, int, int, int], top: float, cx: float,
             u: float) -> Image.Image:
    """The upper garment's fabric over the canvas window ``box`` = (x0, y0, x1, y1), as an image."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    ys = (np.arange(y0, y1, dtype=np.float32)[:, None] - top) / u
    xs = (np.arange(x0, x1, dtype=np.float32)[None, :] - cx) / u
    p = ident.upper_pattern
    if p == "hstripes":
        second = (np.floor(ys / ident.stripe) % 2 == 1) & np.ones_like(xs, bool)
    elif p == "vstripes":
        second = (np.floor(xs / ident.stripe) % 2 == 1) & np.ones_like(ys, bool)
    elif p == "check":
        second = (np.floor(xs / ident.stripe) + np.floor(ys / ident.stripe)) % 2 == 1
    elif p == "yoke":  # a shoulder band of the second colour
        second = (ys < 0.25) & np.ones_like(xs, bool)
    elif p == "split":  # left and right halves differ: which one you see depends on the view
        flip = {"front": 1.0, "back": -1.0}.get(view, 0.0)
        second = (xs * flip < 0) if flip else np.full((h, w), view == "left")
    else:
        second = np.zeros((h, w), bool)
    second = np.broadcast_to(second, (h, w))
    arr = np.where(second[..., None], np.asarray(ident.upper2, np.uint8), np.asarray(ident.upper, np.uint8))
    return Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8)))


def draw_person(canvas: Image.Image, ident: Identity, view: str, cx: float, top: float, u: float,
                rng: np.random.Generator, gait: float | None = None) -> None:
    """Draw ``ident`` seen from ``view`` with feet at ``top + u`` and centre line ``cx``.

    ``gait`` in [-1, 1] sets the walking phase (seen from the side the legs swap with its sign and
    the arm swings against them; from the front or back the feet part by ``|gait|``), so a sequence
    of frames walks; ``None`` draws a random stride.
    """
    d = ImageDraw.Draw(canvas)
    side = view in ("left", "right")
    face = -1.0 if view == "left" else 1.0       # direction a side-view person walks
    b = ident.build
    sw = (0.08 if side else 0.135) * u * b       # half shoulder width
    hw = (0.075 if side else 0.11) * u * b       # half hip width
    aw = 0.05 * u * b                            # arm width
    lw = 0.065 * u * b                           # leg width
    y = lambda f: top + f * u                    # noqa: E731  (fraction of height -> pixel row)
    phase = float(rng.uniform(0.0, 1.0)) if gait is None else (gait if side else abs(gait))
    stride = phase * (0.09 if side else 0.025) * u
    hip, knee_end, foot = y(0.49), y(0.95), y(1.0)

    # legs (skin first; trousers drawn over them), feet, lower garment
    if side:  # one leg forward, one back
        legs = [(cx - 0.2 * lw, cx - stride), (cx + 0.2 * lw, cx + stride)]
    else:
        off = 0.05 * u * b
        legs = [(cx - off, cx - off - stride), (cx + off, cx + off + stride)]
    lower_end = {"trousers": 0.95, "shorts": 0.66, "skirt": 0.5}[ident.lower_kind]
    for x_top, x_bot in legs:
        d.polygon([(x_top - lw / 2, hip), (x_top + lw / 2, hip), (x_bot + lw / 2, knee_end),
                   (x_bot - lw / 2, knee_end)], fill=ident.skin)
        t = (lower_end - 0.49) / 0.46
        x_mid = x_top + (x_bot - x_top) * t
        d.polygon([(x_top - lw / 2 - 1, hip), (x_top + lw / 2 + 1, hip), (x_mid + lw / 2 + 1, y(lower_end)),
                   (x_mid - lw / 2 - 1, y(lower_end))], fill=ident.lower)
        toe = face * 0.04 * u if side else 0.0
        d.rectangle([min(x_bot - lw / 2, x_bot - lw / 2 + toe), knee_end,
                     max(x_bot + lw / 2, x_bot + lw / 2 + toe), foot], fill=ident.shoes)
    if ident.lower_kind == "skirt":
        d.polygon([(cx - hw, y(0.47)), (cx + hw, y(0.47)), (cx + hw * 1.5, y(0.72)), (cx - hw * 1.5, y(0.72))],
                  fill=ident.lower)
    else:
        d.rectangle([cx - hw, y(0.46), cx + hw, y(0.53)], fill=ident.lower)

    # a backpack seen from the side sticks out behind the walker
    if ident.bag == "backpack" and side:
        xs = sorted((cx - face * (sw + 0.07 * u), cx - face * sw * 0.6))
        d.rectangle([xs[0], y(0.18), xs[1], y(0.43)], fill=ident.bag_color)

    # upper garment: torso and sleeves share a mask so patterns run across them
    mask = Image.new("L", canvas.size, 0)
    md = ImageDraw.Draw(mask)
    md.polygon([(cx - sw, y(0.16)), (cx + sw, y(0.16)), (cx + hw * 1.05, y(0.5)), (cx - hw * 1.05, y(0.5))], fill=255)
    sleeve_end = 0.47 if ident.long_sleeves else 0.27
    if side:  # (the random swing is drawn for side views only: the rng stream of old images is kept)
        arms = [cx + face * 0.3 * sw + (float(rng.uniform(-1, 1)) if gait is None else -1.0) * stride]
    else:
        arms = [cx - sw - aw / 2, cx + sw + aw / 2]
    for ax in arms:
        d.rectangle([ax - aw / 2, y(0.17), ax + aw / 2, y(0.53)], fill=ident.skin)  # bare arm + hand
        md.rectangle([ax - aw / 2 - 1, y(0.165), ax + aw / 2 + 1, y(sleeve_end)], fill=255)
    box = mask.getbbox()
    if box is not None:
        if ident.upper_pattern == "solid":
            canvas.paste(ident.upper, box, mask=mask.crop(box))
        else:  # render the fabric only where the garment is
            canvas.paste(_pattern(ident, view, box, top, cx, u), box, mask=mask.crop(box))
    if ident.logo is not None and view == "front":
        d.rectangle([cx - 0.05 * u, y(0.24), cx + 0.05 * u, y(0.31)], fill=ident.logo)

    if ident.bag == "backpack" and view == "back":
        d.rounded_rectangle([cx - sw * 0.8, y(0.19), cx + sw * 0.8, y(0.44)], radius=0.02 * u, fill=ident.bag_color)
    if ident.bag == "backpack" and view == "front":
        for s in (-1, 1):
            d.line([(cx + s * sw * 0.6, y(0.16)), (cx + s * sw * 0.55, y(0.36))], fill=ident.bag_color,
                   width=max(1, int(0.018 * u)))
    if ident.bag == "shoulder":
        s = ident.bag_side * (-1 if view == "back" else 1)
        d.line([(cx - s * sw * 0.8, y(0.16)), (cx + s * hw, y(0.45))], fill=_shade(ident.bag_color, 0.8),
               width=max(1, int(0.015 * u)))
        bx = cx + (s * (hw + 0.03 * u) if not side else -face * 0.02 * u)
        d.rectangle([bx - 0.06 * u, y(0.42), bx + 0.06 * u, y(0.55)], fill=ident.bag_color)
    if ident.bag == "hand":
        hx = arms[0] if side else (arms[1] if ident.bag_side > 0 else arms[0])
        d.rectangle([hx - 0.04 * u, y(0.52), hx + 0.04 * u, y(0.64)], fill=ident.bag_color)

    # head, hair, hat
    d.rectangle([cx - 0.025 * u, y(0.12), cx + 0.025 * u, y(0.17)], fill=ident.skin)
    hx0, hx1, hy0, hy1 = cx - 0.055 * u, cx + 0.055 * u, y(0.01), y(0.145)
    d.ellipse([hx0, hy0, hx1, hy1], fill=ident.skin)
    hs = ident.hair_style
    if hs != "bald":
        if hs == "long":
            d.rectangle([hx0 - 0.01 * u if view != "front" else hx0, y(0.06),
                         hx1 + 0.01 * u if view != "front" else hx0 + 0.025 * u, y(0.27)], fill=ident.hair)
            if view == "front":
                d.rectangle([hx1 - 0.025 * u, y(0.06), hx1, y(0.27)], fill=ident.hair)
        if view == "back":
            d.ellipse([hx0, hy0, hx1, hy1], fill=ident.hair)
        elif side:
            d.pieslice([hx0, hy0, hx1, hy1], 180 if face > 0 else 270, 90 if face > 0 else 0, fill=ident.hair)
            d.chord([hx0, hy0, hx1, hy1], 180, 360, fill=ident.hair)
        else:
            d.chord([hx0, hy0, hx1, y(0.09)], 180, 360, fill=ident.hair)
        if hs == "bun":
            d.ellipse([cx - 0.03 * u, y(-0.02), cx + 0.03 * u, y(0.035)], fill=ident.hair)
    if ident.hat == "cap":
        d.chord([hx0 - 1, y(0.0), hx1 + 1, y(0.09)], 180, 360, fill=ident.hat_color)
        if view == "front":
            d.rectangle([hx0 + 0.01 * u, y(0.045), hx1 - 0.01 * u, y(0.06)], fill=_shade(ident.hat_color, 0.7))
        elif side:
            xs = sorted((cx, cx + face * 0.1 * u))
            d.rectangle([xs[0], y(0.045), xs[1], y(0.06)], fill=_shade(ident.hat_color, 0.7))
    elif ident.hat == "beanie":
        d.chord([hx0 - 1, y(-0.01), hx1 + 1, y(0.1)], 180, 360, fill=ident.hat_color)
        d.rectangle([hx0 - 1, y(0.045), hx1 + 1, y(0.065)], fill=_shade(ident.hat_color, 0.85))


def draw_occluder(canvas: Image.Image, rng: np.random.Generator, other: Identity | None) -> None:
    """Partly hide the person: a pole, a low object (car, bench, bin) or a passer-by."""
    W, H = canvas.size
    d = ImageDraw.Draw(canvas)
    kind = rng.choice(["pole", "low", "person"] if other is not None else ["pole", "low"])
    col = tuple(int(v) for v in rng.integers(20, 230, 3))
    if kind == "pole":
        x = rng.uniform(0.1, 0.9) * W
        w = rng.uniform(0.06, 0.16) * W
        d.rectangle([x - w / 2, 0, x + w / 2, H], fill=_shade((110, 110, 115), rng.uniform(0.4, 1.2)))
    elif kind == "low":
        top = rng.uniform(0.55, 0.8) * H
        x0 = rng.uniform(-0.5, 0.3) * W
        d.rounded_rectangle([x0, top, x0 + rng.uniform(0.7, 1.4) * W, H + 5], radius=0.05 * W, fill=col)
        d.rectangle([x0, top + 0.04 * H, x0 + 0.9 * W, top + 0.07 * H], fill=_shade(col, 1.3))
    else:
        u = rng.uniform(0.85, 1.05) * H
        cx = W * (0.5 + rng.choice([-1, 1]) * rng.uniform(0.45, 0.7))
        draw_person(canvas, other, VIEWS[int(rng.integers(4))], cx, H - u * rng.uniform(0.95, 1.02), u, rng)


def apply_camera(img: Image.Image, camera: Camera, rng: np.random.Generator) -> Image.Image:
    """Optics and light: resolution loss, blur, gain, colour cast, contrast, gradient, noise."""
    w, h = img.size
    if camera.downscale > 1.0:
        small = (max(8, round(w / camera.downscale)), max(8, round(h / camera.downscale)))
        img = img.resize(small, Image.BILINEAR).resize((w, h), Image.BILINEAR)
    radius = camera.blur * float(rng.uniform(0.7, 1.3))
    if radius > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    x = np.asarray(img, np.float32)
    gain = camera.gain * float(rng.uniform(0.93, 1.07))
    grad = 1.0 + camera.light_slope * (0.5 - np.linspace(0, 1, h, dtype=np.float32))[:, None, None]
    # light and contrast in one affine map per row and channel: x * a + b
    a = (gain * camera.contrast) * np.asarray(camera.cast, np.float32) * grad
    x = x * a + np.float32(128.0 * (1.0 - camera.contrast) + 0.5)
    if camera.noise > 0:
        x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(camera.noise)
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def render_crop(ident: Identity, camera: Camera, rng: np.random.Generator, size: tuple[int, int],
                other: Identity | None = None, junk: bool = False) -> Image.Image:
    """One detection box of ``ident`` in ``camera``: (H, W) = ``size``, RGB.

    ``other`` is a passer-by that may occlude. ``junk`` makes a bad detection box (a body part
    or mostly background), as the -1 images of Market-1501.
    """
    H, W = size
    SH, SW = H * SUPERSAMPLE, W * SUPERSAMPLE
    canvas = scene_crop(camera, rng, SH, SW)
    view = VIEWS[int(rng.choice(4, p=np.asarray(camera.view_probs) / sum(camera.view_probs)))]
    u = SH * float(rng.uniform(*camera.scale)) * ident.height
    cx = SW * (0.5 + float(rng.normal(0, 0.06)))
    if junk:  # far off-centre or far too big: a detector's bad box
        if rng.random() < 0.5:
            u *= float(rng.uniform(1.8, 3.0))
            top = -float(rng.uniform(0.2, 0.8)) * u
        else:
            top = SH - u * float(rng.uniform(0.3, 1.0))
            cx = SW * (0.5 + float(rng.choice([-1, 1])) * float(rng.uniform(0.45, 0.7)))
    else:
        foot = SH * float(rng.uniform(0.93, 1.02))  # sometimes the feet are cut off
        top = foot - u
    draw_person(canvas, ident, view, cx, top, u, rng)
    if rng.random() < camera.occlusion:
        draw_occluder(canvas, rng, other)
    img = canvas.reduce(SUPERSAMPLE)
    return apply_camera(img, camera, rng)


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()
