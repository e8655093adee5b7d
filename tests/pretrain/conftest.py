"""A tiny unlabelled pool and a micro DINO recipe that trains in seconds on CPU."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidkit.methods.pretrain_dino import PretrainConfig


def write_pool(root: Path, n: int = 12, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        a = rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)
        a[: 32 + i % 8] = rng.integers(0, 255, 3, dtype=np.uint8)  # some structure
        p = root / f"sub{i % 2}" / f"img_{i:03d}.jpg"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(a).save(p, quality=90)
        paths.append(p)
    return paths


def micro_config(pool: Path, out: Path, **kw) -> PretrainConfig:
    cfg = PretrainConfig(output=str(out), precision="fp32", device="cpu", log_every=1)
    cfg.data.root, cfg.data.batch_size, cfg.data.num_workers = str(pool), 4, 0
    cfg.crops.global_size, cfg.crops.local_size, cfg.crops.local_crops_number = (64, 32), (32, 16), 2
    cfg.model.preset = "vit_micro"
    cfg.head.out_dim, cfg.head.hidden_dim, cfg.head.bottleneck_dim = 32, 32, 16
    cfg.solver.epochs, cfg.solver.warmup_epochs = 2, 1
    for k, v in kw.items():
        section, _, name = k.rpartition(".")
        setattr(getattr(cfg, section) if section else cfg, name, v)
    return cfg


@pytest.fixture
def pool(tmp_path):
    root = tmp_path / "pool"
    write_pool(root)
    return root


@pytest.fixture(name="micro_config")
def micro_config_fixture():
    return micro_config


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models on a shared CPU: one intra-op thread is ~10x faster than oversubscribed threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
