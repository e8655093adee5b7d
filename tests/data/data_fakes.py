"""Builders of tiny on-disk datasets with real (8x4 px) images, shared by the data tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, seed: int = 0, size=(4, 8), fmt: str | None = None) -> Path:
    """A small random RGB image (w, h = size) saved by PIL in the format of its extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)
    return path


def market_tree(base: Path, train=(), query=(), gallery=(), ext=".jpg") -> Path:
    """Market-like folders; each entry is a file name (written as an image)."""
    for folder, names in (("bounding_box_train", train), ("query", query), ("bounding_box_test", gallery)):
        (base / folder).mkdir(parents=True, exist_ok=True)
        for i, n in enumerate(names):
            write_image(base / folder / n, seed=i)
    return base


def market_name(pid: int, cam: int, i: int = 0) -> str:
    return f"{pid:04d}_c{cam}s1_{i:06d}_01.jpg" if pid >= 0 else f"-1_c{cam}s1_{i:06d}_01.jpg"
