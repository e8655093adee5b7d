"""What a synthetic person looks like, fixed for life: clothes, accessories, hair, body.

Colours come from the domain's small palette (with a little per-person jitter), so many people
share their upper or lower colour: a colour histogram alone cannot tell them apart, while
patterns, a logo seen only from the front, a backpack seen mostly from the back, hair, hat and
body shape can.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reidkit.data.synth.styles import RGB, DomainStyle

UPPER_PATTERNS = ("solid", "solid", "hstripes", "vstripes", "check", "split", "yoke")
LOWER_KINDS = ("trousers", "trousers", "trousers", "shorts", "skirt")
HAIR_STYLES = ("short", "short", "long", "bald", "bun")
HATS = ("cap", "beanie")
BAGS = ("backpack", "backpack", "shoulder", "hand")


@dataclass(frozen=True)
class Identity:
    upper: RGB
    upper2: RGB                # second colour of a pattern
    upper_pattern: str
    stripe: float              # pattern period, in units of body height
    long_sleeves: bool
    logo: RGB | None           # chest print, visible from the front only
    lower: RGB
    lower_kind: str
    shoes: RGB
    skin: RGB
    hair: RGB
    hair_style: str
    hat: str | None
    hat_color: RGB
    bag: str | None
    bag_color: RGB
    bag_side: int              # +1 / -1: which shoulder or hand carries the bag
    height: float              # relative body height (1 = tallest)
    build: float               # relative width


def _jitter(rng: np.random.Generator, color: RGB, amount: int = 10) -> RGB:
    c = np.clip(np.asarray(color) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return tuple(int(v) for v in c)  # type: ignore[return-value]


def sample_identity(style: DomainStyle, rng: np.random.Generator) -> Identity:
    """Draw one person of ``style``'s domain."""
    pal = style.palette

    def pick() -> RGB:
        return _jitter(rng, pal[int(rng.integers(len(pal)))])

    upper = pick()
    upper2 = pick()
    while upper2 == upper:
        upper2 = pick()
    has_bag = rng.random() < style.accessory_rate
    has_hat = rng.random() < style.accessory_rate * 0.5
    return Identity(
        upper=upper, upper2=upper2,
        upper_pattern=UPPER_PATTERNS[int(rng.integers(len(UPPER_PATTERNS)))],
        stripe=float(rng.uniform(0.035, 0.08)),
        long_sleeves=bool(rng.random() < 0.6),
        logo=pick() if rng.random() < 0.3 else None,
        lower=pick(), lower_kind=LOWER_KINDS[int(rng.integers(len(LOWER_KINDS)))],
        shoes=_jitter(rng, pal[int(rng.integers(len(pal)))], 20),
        skin=_jitter(rng, style.skin[int(rng.integers(len(style.skin)))], 6),
        hair=_jitter(rng, style.hair[int(rng.integers(len(style.hair)))], 8),
        hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))],
        hat=HATS[int(rng.integers(len(HATS)))] if has_hat else None, hat_color=pick(),
        bag=BAGS[int(rng.integers(len(BAGS)))] if has_bag else None, bag_color=pick(),
        bag_side=1 if rng.random() < 0.5 else -1,
        height=float(rng.uniform(0.86, 1.0)), build=float(rng.uniform(0.85, 1.15)))
