"""Colour-histogram baseline: the floor every learned ReID model must clear.

Each image is resized to (H, W) = (128, 64), converted to HSV and cut into horizontal stripes
(head, shoulders, torso, ..., feet). Each stripe gives a joint H x S x V histogram, with pixels
weighted by a Gaussian around the centre column (the person is centred, the background is not).
Histograms are L1-normalised per stripe, square-rooted (Hellinger kernel: the euclidean distance
of the result is the Hellinger distance) and the concatenation L2-normalised. With the defaults
(6 stripes, 8 x 3 x 3 bins) a feature is 432-dimensional. No learning, no GPU, about a thousand
images per second on one core.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image

from reidkit.data.records import Record
from reidkit.evaluation.featurefile import FeatureSet


def color_histogram(rgb: np.ndarray, stripes: int = 6, bins: tuple[int, int, int] = (8, 3, 3),
                    center_sigma: float | None = 0.25) -> np.ndarray:
    """Feature of one image: ``rgb`` (H, W, 3) uint8 -> (stripes * prod(bins),) float32, unit L2 norm.

    ``center_sigma`` (a fraction of the width) weights pixels by a Gaussian around the centre
    column, where a detector puts the person; ``None`` counts every pixel alike.
    """
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV"), np.int32)  # each channel 0..255
    bh, bs, bv = bins
    idx = (hsv[..., 0] * bh >> 8) * (bs * bv) + (hsv[..., 1] * bs >> 8) * bv + (hsv[..., 2] * bv >> 8)
    h = rgb.shape[0]
    # stripe index of every row; rows split as evenly as integer division allows
    stripe_of_row = np.minimum(np.arange(h) * stripes // h, stripes - 1)
    nb = bh * bs * bv
    flat = (stripe_of_row[:, None] * nb + idx).reshape(-1)
    weights = None
    if center_sigma is not None:
        w = rgb.shape[1]
        x = (np.arange(w) + 0.5 - w / 2) / (center_sigma * w)
        weights = np.broadcast_to(np.exp(-0.5 * x * x)[None, :], idx.shape).reshape(-1)
    hist = np.bincount(flat, weights, minlength=stripes * nb).astype(np.float32).reshape(stripes, nb)
    hist /= np.maximum(hist.sum(1, keepdims=True), 1.0)
    feat = np.sqrt(hist).reshape(-1)
    return feat / max(float(np.linalg.norm(feat)), 1e-12)


def color_histogram_features(source: Sequence[Record] | Sequence[str] | str | os.PathLike,
                             size: tuple[int, int] = (128, 64), stripes: int = 6,
                             bins: tuple[int, int, int] = (8, 3, 3), center_sigma: float | None = 0.25,
                             on_error: str = "skip",
                             progress: bool = True) -> FeatureSet:
    """Colour-histogram ``FeatureSet`` for records, image paths or a folder of crops.

    Features (N, stripes * prod(bins)) float32, unit L2 norm: compare with euclidean or cosine
    distance. Unreadable images are skipped (listed in ``meta['skipped']``) or, with
    ``on_error='raise'``, stop the run naming the file, as in ``extract_features``.
    """
    from reidkit.data.images import ImageError, load_rgb
    from reidkit.evaluation.extract import as_records
    from reidkit.utils.progress import track

    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    records = as_records(source)
    feats, keep, skipped = [], [], []
    items = track(records, "colour histograms") if progress else records
    for r in items:
        try:
            img = load_rgb(r.path)
        except (ImageError, OSError):
            if on_error == "raise":
                raise
            skipped.append(r.path)
            continue
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        feats.append(color_histogram(np.asarray(img), stripes, bins, center_sigma))
        keep.append(r)
    dim = stripes * int(np.prod(bins))
    features = np.stack(feats) if feats else np.zeros((0, dim), np.float32)
    return FeatureSet(features, [r.pid for r in keep], [r.camid for r in keep], [r.path for r in keep],
                      meta={"model": "color_histogram", "stripes": stripes, "bins": list(bins), "center_sigma": center_sigma,
                            "skipped": skipped})
