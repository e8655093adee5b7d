"""A tiny Market-1501-style folder written with PIL: colour-coded identities a micro ViT can learn."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_tiny_market(root: Path, train_ids: int = 8, test_ids: int = 6, per_cam: int = 2, cams: int = 3,
                      size=(64, 32), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    h, w = size

    def person(pid: int, cam: int) -> Image.Image:
        top = np.array([(pid * 53) % 256, (pid * 97) % 256, (pid * 151) % 256], dtype=np.float32)
        bottom = np.array([(pid * 31) % 256, (pid * 17 + 80) % 256, (pid * 71) % 256], dtype=np.float32)
        img = np.empty((h, w, 3), dtype=np.float32)
        img[: h // 2], img[h // 2:] = top, bottom
        img += rng.normal(0, 18, img.shape) + cam * 6  # camera tint + noise
        return Image.fromarray(img.clip(0, 255).astype(np.uint8))

    def write(folder: str, pid: int, cam: int, k: int):
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        person(pid, cam).save(d / f"{pid:04d}_c{cam + 1}s1_{k:06d}_00.jpg", quality=95)

    for pid in range(1, train_ids + 1):
        for cam in range(cams):
            for k in range(per_cam):
                write("bounding_box_train", pid, cam, k)
    for pid in range(100, 100 + test_ids):
        write("query", pid, 0, 0)
        for cam in range(1, cams):
            for k in range(per_cam):
                write("bounding_box_test", pid, cam, k)
    return root


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory) -> Path:
    return write_tiny_market(tmp_path_factory.mktemp("tiny_market"))
