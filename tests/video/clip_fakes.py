"""Tiny tracklets on disk for the video tests: one colour per identity, a brightness per camera,
a little motion and noise per frame. Written in the DukeMTMC-VideoReID layout
``<split>/<pid>/<tracklet>/<frame>.png`` but built directly as ``Tracklet`` records."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from reidkit.data.records import Tracklet


def write_tracklets(root: Path, pids: list[int], cams: int = 2, per_cam: int = 1, frames: int | list[int] = 4,
                    size: tuple[int, int] = (64, 32), seed: int = 0) -> list[Tracklet]:
    rng = np.random.default_rng(seed)
    out = []
    k = 0
    for pid in pids:
        colour = rng.integers(30, 225, size=3)
        for cam in range(cams):
            for j in range(per_cam):
                n = frames if isinstance(frames, int) else frames[k % len(frames)]
                k += 1
                folder = Path(root) / f"{pid:04d}" / f"c{cam}_t{j}"
                folder.mkdir(parents=True, exist_ok=True)
                paths = []
                for f in range(n):
                    img = np.zeros((*size, 3), np.int16) + 20 * cam
                    h0 = 8 + (f % 3)
                    img[h0:h0 + size[0] // 2, 8:24] += colour
                    img += rng.integers(-10, 10, size=img.shape)
                    p = folder / f"{f:04d}.png"
                    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p)
                    paths.append(str(p))
                out.append(Tracklet(tuple(paths), pid, cam))
    return out
