"""The multi-crop settings of DINO pre-training (torch-free, so a recipe is checked before torch loads).
The augmentation itself is ``reidkit.data.multicrop.MultiCrop``."""
from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class MultiCropConfig:
    """Sizes are (height, width) in pixels; scales are fractions of the image area."""

    global_size: tuple[int, int] = (256, 128)
    local_size: tuple[int, int] = (128, 64)
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    local_crops_number: int = 8
    # torchvision's default aspect range, squeezed into 2:1 person crops as the official code does
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    color_jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: tuple[float, float, float] = (1.0, 0.1, 0.5)  # global 1, global 2, locals
    blur_radius: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.2  # global view 2 only
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        for name in ("global_size", "local_size"):
            h, w = getattr(self, name)
            if h <= 0 or w <= 0:
                raise ValueError(f"multicrop.{name} must be positive, got {(h, w)}")
        if self.local_crops_number < 0:
            raise ValueError(f"multicrop.local_crops_number must be >= 0, got {self.local_crops_number}")
        for name in ("global_scale", "local_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"multicrop.{name} must satisfy 0 < min <= max <= 1, got {(lo, hi)}")

    @property
    def num_views(self) -> int:
        return 2 + self.local_crops_number
