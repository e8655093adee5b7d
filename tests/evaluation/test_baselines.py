"""Colour-histogram baseline against a loop-by-loop reference and hand-built images."""
from __future__ import annotations

import colorsys

import numpy as np
import pytest
from PIL import Image

from reidkit.evaluation.baselines import color_histogram, color_histogram_features


def _reference(rgb, stripes, bins, sigma):
    """Plain loops: PIL's HSV per pixel, bin by integer division, weight, normalise."""
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV"), np.int64)
    h, w, _ = rgb.shape
    nb = bins[0] * bins[1] * bins[2]
    hist = np.zeros((stripes, nb))
    for y in range(h):
        s = min(y * stripes // h, stripes - 1)
        for x in range(w):
            hh, ss, vv = hsv[y, x]
            b = (hh * bins[0] // 256) * bins[1] * bins[2] + (ss * bins[1] // 256) * bins[2] + vv * bins[2] // 256
            weight = 1.0 if sigma is None else np.exp(-0.5 * ((x + 0.5 - w / 2) / (sigma * w)) ** 2)
            hist[s, b] += weight
    hist /= hist.sum(1, keepdims=True)
    f = np.sqrt(hist).reshape(-1)
    return f / np.linalg.norm(f)


@pytest.mark.parametrize("sigma", [None, 0.25])
def test_matches_loop_reference(sigma):
    rgb = np.random.default_rng(0).integers(0, 256, (24, 10, 3), dtype=np.uint8)
    got = color_histogram(rgb, stripes=4, bins=(8, 3, 3), center_sigma=sigma)
    np.testing.assert_allclose(got, _reference(rgb, 4, (8, 3, 3), sigma), rtol=1e-5, atol=1e-6)


def test_hand_computed_two_colour_image():
    # top half pure red, bottom half pure blue; 2 stripes, 4 hue bins, 1 s/v bin each
    rgb = np.zeros((4, 2, 3), np.uint8)
    rgb[:2, :, 0] = 255
    rgb[2:, :, 2] = 255
    f = color_histogram(rgb, stripes=2, bins=(4, 1, 1), center_sigma=None)
    h_blue = colorsys.rgb_to_hsv(0, 0, 1)[0]  # 2/3 of the hue circle -> PIL hue 170 -> bin 2
    expected = np.zeros(8)
    expected[0] = 1.0                      # stripe 0, hue bin 0 (red)
    expected[4 + int(h_blue * 255) * 4 // 256] = 1.0
    np.testing.assert_allclose(f, expected / np.sqrt(2), atol=1e-6)


def test_same_clothes_closer_than_other_clothes():
    a = np.zeros((32, 16, 3), np.uint8); a[:16] = (200, 30, 30); a[16:] = (30, 30, 160)
    b = a.copy(); b[:, :2] = (90, 90, 90)   # same person, some background at the border
    c = np.zeros_like(a); c[:16] = (30, 160, 30); c[16:] = (220, 220, 40)
    fa, fb, fc = (color_histogram(x) for x in (a, b, c))
    assert np.linalg.norm(fa - fb) < np.linalg.norm(fa - fc)


def test_feature_set_from_folder_with_labels_and_skipped_files(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("0002_c1s1_000451_03.jpg", "0007_c2s1_000100_01.jpg"):
        Image.fromarray(rng.integers(0, 256, (40, 20, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "0003_c1s1_000001_01.jpg").write_bytes(b"not a jpeg")
    fs = color_histogram_features(tmp_path, progress=False)
    assert fs.features.shape == (2, 6 * 72)
    assert list(fs.pids) == [2, 7] and list(fs.camids) == [0, 1]
    np.testing.assert_allclose(np.linalg.norm(fs.features, axis=1), 1.0, rtol=1e-5)
    assert len(fs.meta["skipped"]) == 1 and fs.meta["skipped"][0].endswith("0003_c1s1_000001_01.jpg")
    with pytest.raises(ValueError, match="0003_c1s1_000001_01.jpg"):
        color_histogram_features(tmp_path, progress=False, on_error="raise")


def test_baseline_does_not_import_the_model_stack(tmp_path):
    """The baseline only needs ``as_records`` from ``evaluation.extract``; importing that module must not pull
    in ``reidkit.models`` (timm, torchvision): the demo's baseline step took 2x its CPU time when it did."""
    import subprocess
    import sys

    Image.fromarray(np.full((16, 8, 3), 200, np.uint8)).save(tmp_path / "0001_c1s1_000001_00.jpg")
    code = ("import sys; from reidkit.evaluation.baselines import color_histogram_features as f; "
            f"fs = f({str(tmp_path)!r}, progress=False); "
            "print(len(fs.pids), sorted(m for m in ('reidkit.models', 'timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "[]"], out
