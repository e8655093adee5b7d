"""Detecting a collapsed embedding: features of different images that all point the same way.

A ReID feature is compared by cosine. When every feature is one shared vector plus a tiny
image-specific part, all cosines sit near 1 (``reidkit search`` prints 1.0000 for every match),
thresholds mean nothing, and a ranking hangs on differences at the 1e-6 level, where two code
paths that round differently disagree. The tiny supervised recipe trained from scratch does
this: the pre-LayerNorm CLS token's shared part grows during training (norm 3.6 at init, 30 after
one epoch, 47 after four on the synthetic benchmark) while the per-image part stays ~0.01 per
dimension, and the LayerNorm scales the whole to norm sqrt(D), so the output is nearly constant.
The LayerNorm's affine is not the cause (weight ~1, bias ~0); the BNNeck hides it from training:
the ID loss reads BN(f), which subtracts the batch mean, and the triplet loss reads differences
f_i - f_j, so nothing pushes against a shared vector. Centring by the BN's running mean (the
``neck_feat='after'`` feature) removes it: pairwise cosine 0.999 -> 0.44 at the same mAP.

``check_collapse(features)`` measures it on a sample: the mean pairwise cosine between different
rows, and the share of each feature's energy that is the shared mean. ``reidkit extract`` warns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_MEAN_COSINE = 0.98      # distinct person crops of a trained model: typically 0.1 .. 0.7
SAMPLE = 4096               # rows used (evenly spaced): the statistic needs no more


@dataclass(frozen=True)
class CollapseReport:
    mean_cosine: float          # mean cosine between different rows
    shared_share: float         # |mean feature|^2 / mean |feature|^2: 1.0 = all rows equal
    rows: int                   # rows measured

    @property
    def collapsed(self) -> bool:
        return self.mean_cosine > MAX_MEAN_COSINE

    def message(self, what: str = "features") -> str:
        return (f"{what} look collapsed: the mean cosine between different images is {self.mean_cosine:.4f} "
                f"({100 * self.shared_share:.2f}% of each feature is one shared vector; measured on "
                f"{self.rows} rows), so every cosine score is near 1 and rankings hang on rounding. "
                "The shared vector hides the differences: test with the BN feature (recipe model.neck_feat=after, "
                "or extract --preset ... --set neck_feat=after), or train from pre-trained weights")


def check_collapse(features: np.ndarray) -> CollapseReport | None:
    """Collapse statistics of (N, D) features; None when there are fewer than 2 usable rows."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        return None
    if len(x) > SAMPLE:
        x = x[np.linspace(0, len(x) - 1, SAMPLE).astype(np.int64)]
    norms = np.linalg.norm(x, axis=1)
    x = x[norms > 0]
    n = len(x)
    if n < 2:
        return None
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    # sum over all pairs i != j of cos = |sum of unit rows|^2 - n  (no N x N matrix)
    total = unit.sum(axis=0)
    mean_cos = (float(total @ total) - n) / (n * (n - 1))
    mean = x.mean(axis=0)
    shared = float(mean @ mean) / float(np.mean(np.einsum("nd,nd->n", x, x)))
    return CollapseReport(mean_cos, shared, n)
