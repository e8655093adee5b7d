import random

import numpy as np
import pytest
import torch
from PIL import Image

from reidkit.data.multicrop import MultiCrop, MultiCropConfig, random_resized_crop_box


def person(h=128, w=64, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_paper_shapes_and_normalisation():
    mc = MultiCrop()  # the paper: 2 x 256x128 + 8 x 128x64
    views = mc(person(), random.Random(0))
    assert len(views) == 10
    assert [tuple(v.shape) for v in views[:2]] == [(3, 256, 128)] * 2
    assert [tuple(v.shape) for v in views[2:]] == [(3, 128, 64)] * 8
    assert all(v.dtype == torch.float32 for v in views)
    # ImageNet normalisation range: (0 - 0.485) / 0.229 ... (1 - 0.406) / 0.225
    assert min(v.min().item() for v in views) >= -2.12 - 1e-4
    assert max(v.max().item() for v in views) <= 2.64 + 1e-4


def test_cpu_sizes_and_determinism_by_rng():
    cfg = MultiCropConfig(global_size=(64, 32), local_size=(32, 16), local_crops_number=3)
    mc = MultiCrop(cfg)
    a = mc(person(seed=1), random.Random(7))
    b = mc(person(seed=1), random.Random(7))
    c = mc(person(seed=1), random.Random(8))
    assert [tuple(v.shape) for v in a] == [(3, 64, 32)] * 2 + [(3, 32, 16)] * 3
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_grey_and_rgba_inputs():
    mc = MultiCrop(MultiCropConfig(global_size=(32, 16), local_size=(16, 8), local_crops_number=1))
    for mode in ("L", "RGBA"):
        views = mc(person().convert(mode), random.Random(0))
        assert views[0].shape == (3, 32, 16)


def test_crop_box_area_and_ratio_within_range():
    rng = random.Random(0)
    for _ in range(500):
        l, t, r, b = random_resized_crop_box(64, 128, (0.05, 0.4), (3 / 4, 4 / 3), rng)
        w, h = r - l, b - t
        assert 0 <= l < r <= 64 and 0 <= t < b <= 128
        assert 0.04 <= w * h / (64 * 128) <= 0.42  # rounding slack
        assert 0.7 <= w / h <= 1.4


def test_crop_box_fallback_is_centre_crop():
    # a 1000x10 strip can never fit the area/ratio draws: centre crop clamped to the max ratio
    l, t, r, b = random_resized_crop_box(1000, 10, (0.9, 1.0), (3 / 4, 4 / 3), random.Random(0))
    assert (r - l, b - t) == (13, 10) and l == (1000 - 13) // 2


def test_solarize_only_on_second_global_view():
    """With every other augmentation off, view 1 is unchanged and view 2 solarized."""
    cfg = MultiCropConfig(global_size=(32, 16), local_size=(16, 8), local_crops_number=0, global_scale=(1.0, 1.0),
                          ratio=(0.5, 0.5), color_jitter_p=0.0, grayscale_p=0.0, blur_p=(0.0, 0.0, 0.0),
                          solarize_p=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    img = Image.fromarray(np.full((32, 16, 3), 200, dtype=np.uint8))
    v1, v2 = MultiCrop(cfg)(img, random.Random(0))
    assert torch.allclose(v1, torch.full_like(v1, 200 / 255))
    assert torch.allclose(v2, torch.full_like(v2, 55 / 255))


@pytest.mark.parametrize("kw", [{"local_crops_number": -1}, {"global_scale": (0.5, 0.2)}, {"local_size": (0, 8)}])
def test_bad_config_rejected(kw):
    with pytest.raises(ValueError, match="multicrop"):
        MultiCropConfig(**kw)
