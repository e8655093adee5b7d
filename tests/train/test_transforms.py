"""Transforms of the recipes, checked against PIL / numpy references written here."""
import numpy as np
import pytest
import torch
from PIL import Image

from reidkit.data.transforms import (RandomErasing, build_test_transform, build_train_transform,
                                     build_usl_test_transform, build_usl_train_transform, split_resize)


def _image(h=40, w=24, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _ref(img, size, resample):
    arr = np.asarray(img.resize((size[1], size[0]), resample), dtype=np.float32) / 255.0
    return torch.from_numpy((arr - 0.5) / 0.5).permute(2, 0, 1)


def test_test_transform_is_bilinear_resize_and_half_normalisation():
    img = _image()
    out = build_test_transform((32, 16))(img)
    assert out.shape == (3, 32, 16) and out.dtype == torch.float32
    assert torch.allclose(out, _ref(img, (32, 16), Image.BILINEAR), atol=1e-6)
    usl = build_usl_test_transform((32, 16))(img)
    assert torch.allclose(usl, _ref(img, (32, 16), Image.BICUBIC), atol=1e-6)


def test_train_transform_is_flip_then_shifted_window_of_zero_padded_bicubic_resize():
    img = _image(seed=1)
    size, pad = (32, 16), 10
    ref = _ref(img, size, Image.BICUBIC)
    padded = torch.full((3, size[0] + 2 * pad, size[1] + 2 * pad), -1.0)  # zero pixels -> -1
    torch.manual_seed(0)
    t = build_train_transform(size, erasing=0)
    seen_flip = {True: 0, False: 0}
    for _ in range(30):
        out = t(img)
        found = None
        for flip in (False, True):
            padded[:, pad:pad + size[0], pad:pad + size[1]] = ref.flip(-1) if flip else ref
            for dy in range(2 * pad + 1):
                for dx in range(2 * pad + 1):
                    if torch.allclose(out, padded[:, dy:dy + size[0], dx:dx + size[1]], atol=1e-6):
                        found = flip
                        break
                if found is not None:
                    break
            if found is not None:
                break
        assert found is not None, "output is not a padded crop of the (flipped) resized image"
        seen_flip[found] += 1
    assert seen_flip[True] > 3 and seen_flip[False] > 3


def test_train_transform_is_seeded():
    img = _image(seed=2)
    t = build_train_transform((32, 16))
    torch.manual_seed(5)
    a = t(img)
    torch.manual_seed(5)
    b = t(img)
    assert torch.equal(a, b)


def _erased_box(before, after):
    diff = (before != after).any(0)
    if not diff.any():
        return None
    ys, xs = torch.nonzero(diff, as_tuple=True)
    h, w = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
    return h, w, int(diff.sum())


def test_pixel_erasing_one_box_area_and_aspect_in_range():
    torch.manual_seed(0)
    H, W = 128, 64
    er = RandomErasing(p=1.0)
    ratios = []
    for _ in range(300):
        x = torch.full((3, H, W), 7.0)  # a value N(0,1) never produces
        box = _erased_box(torch.full((3, H, W), 7.0), er(x))
        assert box is not None
        h, w, n = box
        assert n == h * w, "the erased region must be one full rectangle"
        # round(sqrt(.)) on each side: allow one pixel either way
        assert 0.02 * H * W * 0.8 <= h * w <= (1 / 3) * H * W * 1.15
        ratios.append(h / w)
    logr = np.log(ratios)
    assert logr.min() >= np.log(0.3) - 0.2 and logr.max() <= np.log(1 / 0.3) + 0.2
    assert abs(np.median(logr)) < 0.35  # log-uniform aspect is symmetric around 1


def test_erasing_probability_and_constant_fill():
    torch.manual_seed(1)
    er = RandomErasing(p=0.5, area=(0.02, 0.4), fill=(0.485, 0.456, 0.406), log_aspect=False, attempts=100)
    hits = 0
    for _ in range(400):
        x = torch.full((3, 64, 32), 7.0)
        out = er(x)
        if (out != 7.0).any():
            hits += 1
            vals = out[:, (out != 7.0).any(0)]
            assert torch.allclose(vals, torch.tensor([0.485, 0.456, 0.406])[:, None].expand_as(vals))
    assert 150 < hits < 250


def test_usl_train_transform_shape_and_split_resize():
    img = _image(seed=3)
    t = build_usl_train_transform((32, 16))
    assert t(img).shape == (3, 32, 16)
    resize, rest = split_resize(build_train_transform((32, 16)))
    torch.manual_seed(3)
    a = build_train_transform((32, 16))(img)
    torch.manual_seed(3)
    b = rest(resize(img))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs", [dict(p=1.5), dict(area=(0.5, 0.1)), dict(aspect=(0, 2)), dict(fill="noise")])
def test_erasing_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        RandomErasing(**kwargs)


def test_bad_size_and_interpolation():
    with pytest.raises(ValueError, match="positive"):
        build_test_transform((0, 16))
    with pytest.raises(ValueError, match="interpolation"):
        build_test_transform((32, 16), interpolation="lanczos5")
