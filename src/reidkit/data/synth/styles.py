"""Domain ("city") styles and the cameras inside them.

A domain fixes what its people wear (a small shared clothing palette, so identities are
genuinely confusable), its light (brightness, colour temperature, contrast), its background
family and its image quality (blur, resolution, sensor noise). The gap between domains is
large on purpose: it is what unsupervised domain adaptation has to close.

A camera is drawn from its domain's style: one background texture, a colour cast and gain
of its own, a preferred viewpoint mix, and how often people are partly occluded.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class DomainStyle:
    name: str
    palette: tuple[RGB, ...]        # clothing colours shared by every identity of the domain
    skin: tuple[RGB, ...]
    hair: tuple[RGB, ...]
    background: str                 # texture family, see backgrounds.py
    gain: tuple[float, float]       # illumination gain range over cameras
    cast: RGB                       # mean colour temperature as an RGB multiplier (x/255)
    cast_jitter: float              # per-camera spread of the cast
    contrast: float                 # < 1 flattens the image (haze, night)
    blur: tuple[float, float]       # Gaussian blur radius range (output pixels)
    downscale: float                # > 1: captured at lower resolution, then upsampled
    noise: float                    # sensor noise std (0..255 scale)
    occlusion: float                # probability of an occluder in an image
    accessory_rate: float           # probability of a bag, and half of it of a hat


# Four cities. Palettes overlap a little across cities and a lot within one.
DOMAIN_STYLES: tuple[DomainStyle, ...] = (
    DomainStyle(
        name="city_a", background="street",
        palette=((30, 30, 35), (235, 235, 230), (200, 30, 40), (30, 60, 150), (240, 200, 40),
                 (40, 130, 60), (120, 120, 125), (230, 120, 30), (150, 40, 130), (90, 60, 40),
                 (100, 170, 220), (240, 150, 170)),
        skin=((240, 200, 170), (210, 160, 120), (160, 110, 75), (100, 65, 45)),
        hair=((25, 20, 15), (90, 60, 30), (180, 140, 80), (60, 40, 30)),
        gain=(0.95, 1.15), cast=(255, 240, 220), cast_jitter=0.06, contrast=1.0,
        blur=(0.0, 0.6), downscale=1.0, noise=3.0, occlusion=0.25, accessory_rate=0.45),
    DomainStyle(
        name="city_b", background="brick",
        palette=((45, 50, 60), (85, 90, 80), (140, 135, 120), (60, 70, 100), (110, 60, 55),
                 (70, 90, 70), (170, 165, 150), (35, 35, 40), (120, 110, 140), (150, 120, 90)),
        skin=((235, 205, 185), (200, 165, 140), (150, 115, 90)),
        hair=((30, 25, 25), (110, 90, 70), (200, 190, 170), (70, 50, 35)),
        gain=(0.7, 0.95), cast=(215, 230, 255), cast_jitter=0.05, contrast=0.8,
        blur=(0.4, 1.1), downscale=1.3, noise=4.0, occlusion=0.3, accessory_rate=0.55),
    DomainStyle(
        name="city_c", background="park",
        palette=((250, 250, 245), (255, 170, 190), (170, 220, 250), (250, 230, 140), (180, 240, 190),
                 (210, 180, 240), (255, 200, 150), (60, 60, 70), (230, 90, 80), (120, 200, 200)),
        skin=((250, 215, 190), (225, 180, 140), (180, 130, 90), (120, 80, 55)),
        hair=((30, 25, 20), (140, 90, 40), (220, 190, 120), (170, 60, 30)),
        gain=(1.05, 1.3), cast=(255, 250, 235), cast_jitter=0.05, contrast=0.95,
        blur=(0.0, 0.5), downscale=1.0, noise=2.0, occlusion=0.2, accessory_rate=0.35),
    DomainStyle(
        name="city_d", background="indoor",
        palette=((20, 20, 25), (200, 50, 50), (50, 50, 180), (200, 200, 200), (80, 80, 85),
                 (50, 140, 140), (160, 130, 60), (110, 40, 60), (180, 100, 40), (60, 110, 50)),
        skin=((230, 195, 160), (190, 145, 110), (130, 90, 65)),
        hair=((20, 15, 15), (80, 55, 35), (150, 120, 80)),
        gain=(0.5, 0.75), cast=(255, 200, 140), cast_jitter=0.08, contrast=0.7,
        blur=(0.8, 1.5), downscale=1.8, noise=7.0, occlusion=0.35, accessory_rate=0.5),
)

VIEWS = ("front", "back", "left", "right")


@dataclass(frozen=True)
class Camera:
    domain: str
    index: int                      # 0-based; written as c{index+1}
    background: str
    bg_seed: int                    # texture of this camera's scene
    bg_tint: RGB
    gain: float
    cast: tuple[float, float, float]
    contrast: float
    blur: float
    downscale: float
    noise: float
    occlusion: float
    view_probs: tuple[float, ...]   # over VIEWS: cameras look along or across walking paths
    scale: tuple[float, float]      # person height as a fraction of the image height
    light_slope: float              # vertical illumination gradient (top brighter when > 0)


def make_camera(style: DomainStyle, index: int, rng: np.random.Generator) -> Camera:
    """Draw one camera of ``style``; every random choice comes from ``rng``."""
    cast = np.asarray(style.cast, np.float64) / 255.0
    cast = cast * (1.0 + rng.normal(0.0, 0.6 * style.cast_jitter, 3))
    cast = cast / cast.max()
    # A camera pointing along a path sees fronts and backs, one across it sees sides.
    along = rng.uniform(0.2, 0.9)
    side = 1.0 - along
    lr = rng.uniform(0.3, 0.7)
    fb = rng.uniform(0.3, 0.7)
    views = (along * fb, along * (1 - fb), side * lr, side * (1 - lr))
    # muted scene colours: the camera changes the background, the person stays the signal
    tint = tuple(int(v) for v in 0.3 * rng.integers(40, 215, 3) + 0.7 * 128)
    lo = rng.uniform(0.8, 0.9)
    return Camera(
        domain=style.name, index=index, background=style.background,
        bg_seed=int(rng.integers(2**31)), bg_tint=tint,  # type: ignore[arg-type]
        gain=float(rng.uniform(*style.gain)), cast=tuple(float(c) for c in cast),  # type: ignore[arg-type]
        contrast=float(style.contrast * rng.uniform(0.9, 1.1)),
        blur=float(rng.uniform(*style.blur)), downscale=style.downscale, noise=style.noise,
        occlusion=float(np.clip(style.occlusion * rng.uniform(0.5, 1.5), 0.0, 0.8)),
        view_probs=tuple(float(v) for v in views), scale=(lo, min(0.98, lo + 0.15)),
        light_slope=float(rng.uniform(-0.15, 0.15)))
