"""Shared fixtures: clustered synthetic features, a folder of small person-like images, a tiny model."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


def clustered(n_ids: int, per_id: int, dim: int, noise: float = 0.6, seed: int = 0):
    """(N, D) features around ``n_ids`` centres; pids (N,), camids (N,) cycling over 6 cameras."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    pids = np.repeat(np.arange(n_ids), per_id)
    camids = np.tile(np.arange(per_id) % 6, n_ids)
    feats = centres[pids] + noise * rng.normal(size=(len(pids), dim))
    return feats.astype(np.float32), pids.astype(np.int64), camids.astype(np.int64)


def brute_force(gallery: np.ndarray, queries: np.ndarray, k: int):
    """Reference ranking written out with plain loops over cosine similarities (no faiss)."""
    def unit(v):
        return v / np.linalg.norm(v)
    ids, scores = [], []
    for q in queries:
        sims = [float(np.dot(unit(q.astype(np.float64)), unit(g.astype(np.float64)))) for g in gallery]
        order = sorted(range(len(sims)), key=lambda i: -sims[i])[:k]
        ids.append(order)
        scores.append([sims[i] for i in order])
    return np.array(ids), np.array(scores)


@pytest.fixture(name="brute_force")
def _brute_force_fixture():
    return brute_force


@pytest.fixture(name="clustered")
def _clustered_fixture():
    return clustered


@pytest.fixture
def features():
    return clustered(40, 6, 32)


@pytest.fixture(scope="session")
def image_gallery(tmp_path_factory):
    """12 Market-named 64x32 images of 4 identities x 3 cameras: (root folder, sorted paths)."""
    root = tmp_path_factory.mktemp("gallery")
    rng = np.random.default_rng(7)
    paths = []
    for pid in range(1, 5):
        base = rng.integers(0, 256, size=(8, 4, 3))
        for cam in range(1, 4):
            arr = np.clip(base.astype(int) + rng.integers(-40, 40, size=base.shape), 0, 255).astype(np.uint8)
            img = Image.fromarray(arr).resize((32, 64), Image.NEAREST)
            p = root / f"{pid:04d}_c{cam}s1_000{cam}01_00.jpg"
            img.save(p, quality=95)
            paths.append(str(p))
    return root, sorted(paths)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A randomly initialised 64-dim, 2-deep ViT at 64x32 saved as a reidkit model file."""
    import torch
    from reidkit.models import build_model, save_model

    torch.manual_seed(0)
    model = build_model("vit_micro", img_size=(64, 32))
    return save_model(model, tmp_path_factory.mktemp("model") / "tiny.safetensors")
