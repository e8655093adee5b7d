"""Device multi-crop against data/multicrop.py: the same draws, op-by-op pixels, per-view distributions."""
import math
import random

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageFilter, ImageOps

from reidkit.data import device_multicrop as dm
from reidkit.data.multicrop import MultiCrop, MultiCropConfig


def _person(seed, size=(256, 128)):
    """Smooth coloured image (blocks + gradient): resampling differences stay small, colour ops visible."""
    rng = np.random.default_rng(seed)
    h, w = size
    low = rng.uniform(0, 255, (8, 4, 3))
    img = np.asarray(Image.fromarray(low.astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR), np.float32)
    img += np.linspace(-30, 30, h)[:, None, None]
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def _to_float(img):
    return TF.pil_to_tensor(img).float().div(255)[None]


def test_draws_consume_the_rng_exactly_like_multicrop():
    cfg = MultiCropConfig(global_size=(64, 32), local_size=(32, 16), local_crops_number=4)
    for seed in range(40):
        img = _person(seed, (50 + seed, 30))
        a, b = random.Random(seed), random.Random(seed)
        MultiCrop(cfg)(img, a)
        _, params = dm.MultiCropDraws(cfg)(img, b)
        assert a.getstate() == b.getstate()
        assert params.shape == (cfg.num_views, dm.NUM_PARAMS)
    # the boxes are multicrop's boxes
    from reidkit.data.multicrop import random_resized_crop_box
    img = _person(0, (70, 40))
    _, params = dm.MultiCropDraws(cfg)(img, random.Random(5))
    box = random_resized_crop_box(40, 70, cfg.global_scale, cfg.ratio, random.Random(5))
    assert np.allclose(params[0, :4].numpy(), [box[0] / 40, box[1] / 70, box[2] / 40, box[3] / 70])


def test_crop_resize_matches_pil_box_resize():
    img = _person(1)
    x = _to_float(img)
    for box, flip in (((10, 20, 90, 200), 0.0), ((0, 0, 128, 256), 1.0), ((40, 100, 70, 160), 0.0)):
        row = torch.zeros(1, dm.NUM_PARAMS, dtype=torch.float64)
        row[0, :4] = torch.tensor([box[0] / 128, box[1] / 256, box[2] / 128, box[3] / 256])
        row[0, 4] = flip
        got = dm.crop_resize(x, row, (128, 64))
        ref = img.resize((64, 128), Image.Resampling.BICUBIC, box=box)
        if flip:
            ref = ref.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        assert (got - _to_float(ref)).abs().mean() < 2.5 / 255


@pytest.mark.parametrize("op,factor,pil", [
    (0, 1.3, lambda im, f: TF.adjust_brightness(im, f)),
    (1, 0.7, lambda im, f: TF.adjust_contrast(im, f)),
    (2, 1.4, lambda im, f: TF.adjust_saturation(im, f)),
    (3, 0.08, lambda im, f: TF.adjust_hue(im, f)),
    (3, -0.1, lambda im, f: TF.adjust_hue(im, f)),
])
def test_colour_ops_match_pil(op, factor, pil):
    img = _person(2, (64, 32))
    got = dm.adjust(_to_float(img), op, torch.tensor([factor]))
    ref = _to_float(pil(img, factor))
    # PIL shifts hue in 8-bit HSV (256 hue steps): a few pixels move by several grey levels
    assert (got - ref).abs().mean() < 1.5 / 255 and (got - ref).abs().max() < (10 if op == 3 else 6) / 255


def test_grey_blur_solarise_match_pil():
    img = _person(3, (64, 32))
    x = _to_float(img)
    assert (dm._grey(x) - _to_float(img.convert("L"))).abs().max() < 1 / 255
    for sigma in (0.1, 0.8, 2.0):
        got = dm.gaussian_blur(x, torch.tensor([sigma]))
        ref = _to_float(img.filter(ImageFilter.GaussianBlur(radius=sigma)))
        assert (got - ref)[..., 4:-4, 4:-4].abs().mean() < 1.5 / 255, sigma
    assert torch.equal(dm.gaussian_blur(x, torch.tensor([0.0])), x)
    row = torch.zeros(1, dm.NUM_PARAMS, dtype=torch.float64)
    row[0, 6:10] = torch.tensor([0, 1, 2, 3])
    row[0, 16] = 1.0
    aug = dm.DeviceMultiCrop(MultiCropConfig(mean=(0, 0, 0), std=(1, 1, 1)))
    assert (aug._augment(x.clone(), row) - _to_float(ImageOps.solarize(img, 128))).abs().max() < 1e-6


def _views(n, cfg, seed0=100):
    pil, dev = MultiCrop(cfg), dm.MultiCropDraws(cfg)
    aug = dm.DeviceMultiCrop(cfg)
    ref, canv, pars = [], [], []
    for i in range(n):
        img = _person(seed0 + i, (256, 128))
        ref.append(torch.stack([v.mean((1, 2)) for v in pil(img, random.Random(i))]))    # (V, 3) per-view means
        c, p = dev(img, random.Random(i))
        canv.append(c)
        pars.append(p)
    views = aug(torch.stack(canv), torch.stack(pars))
    got = torch.stack([v.mean((2, 3)) for v in views], 1)       # (N, V, 3)
    return torch.stack(ref), got, torch.stack(pars), views


def _ks(a, b):
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def test_views_match_multicrop_by_distribution():
    cfg = MultiCropConfig(local_crops_number=4)
    ref, got, params, views = _views(120, cfg)
    assert [tuple(v.shape) for v in views] == [(120, 3, 256, 128)] * 2 + [(120, 3, 128, 64)] * 4
    # the official per-view probabilities in the draws (fixed seeds: deterministic)
    n = len(params)
    blur = (params[:, :, 15] > 0).float().mean(0)
    assert blur[0] == 1.0 and blur[1] < 0.25 and abs(float(blur[2:].mean()) - 0.5) < 0.1
    assert params[:, 0, 16].sum() == 0 and params[:, 2:, 16].sum() == 0 and 0.08 < float(params[:, 1, 16].mean()) < 0.35
    assert abs(float(params[:, :, 5].mean()) - 0.8) < 0.06 and abs(float(params[:, :, 14].mean()) - 0.2) < 0.06
    assert abs(float(params[:, :, 4].mean()) - 0.5) < 0.08
    # paired: same draws -> nearly the same per-view colour statistics (normalised units)
    diff = (got - ref).abs()
    assert float(diff.mean()) < 0.03 and float(diff.quantile(0.99)) < 0.2
    # and unpaired distributions of every view's mean per channel agree (KS, p ~ 0.001 critical value)
    crit = 1.95 * math.sqrt(2 / n)
    for view in range(cfg.num_views):
        for ch in range(3):
            assert _ks(got[:, view, ch].numpy(), ref[:, view, ch].numpy()) < crit, (view, ch)


def test_collate_and_pool_shape():
    cfg = MultiCropConfig(global_size=(32, 16), local_size=(16, 8), local_crops_number=2)
    draws = dm.MultiCropDraws(cfg)
    batch = [(draws(_person(i, (40, 20)), random.Random(i)), i) for i in range(3)]
    (canvases, params), idx = dm.collate(batch)
    assert canvases.shape == (3, 32, 16, 3) and params.shape == (3, 4, dm.NUM_PARAMS) and idx.tolist() == [0, 1, 2]
    views = dm.DeviceMultiCrop(cfg)(canvases, params)
    assert [tuple(v.shape) for v in views] == [(3, 3, 32, 16)] * 2 + [(3, 3, 16, 8)] * 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    cfg = MultiCropConfig(local_crops_number=2)
    draws = dm.MultiCropDraws(cfg)
    items = [draws(_person(i), random.Random(i)) for i in range(8)]
    canv, pars = torch.stack([c for c, _ in items]), torch.stack([p for _, p in items])
    aug = dm.DeviceMultiCrop(cfg)
    for a, b in zip(aug(canv, pars), aug.cuda()(canv.cuda(), pars.cuda())):
        torch.testing.assert_close(b.cpu(), a, atol=1e-3, rtol=1e-3)
