"""Pairwise distances between query and gallery features, in torch, in row chunks.

Two metrics, as in every ReID toolkit:
  * ``cosine``:    ``1 - <x/|x|, y/|y|>``, in [0, 2].
  * ``euclidean``: ``|x - y|`` (``squared=True`` gives ``|x - y|^2``, which ranks identically and
    is what fast-reid / torchreid return; we compute the square and take the root only on demand).

Both are computed as one GEMM per row chunk, so the extra memory is ``chunk x N_g`` floats and a
million-image gallery never needs a full matrix. Outputs are float32; ``-0.0`` and the tiny
negatives that the expansion ``|x|^2 + |y|^2 - 2xy`` leaves are clamped to ``+0.0`` so that the
ranking is well defined.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

METRICS = ("cosine", "euclidean", "sqeuclidean")


class DistanceError(ValueError):
    """Incompatible features or an unknown metric."""


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise DistanceError(f"features must be (N, D), got shape {tuple(t.shape)}")
    return t.float()


def normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Row-wise L2 normalisation of (N, D); zero rows stay zero."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(eps)


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise DistanceError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    return metric


class DistanceFunction:
    """Prepared ``(query rows) -> distances to the whole gallery`` for one metric.

    Normalisation and gallery squared norms are computed once, so each chunk costs one GEMM.
    """

    def __init__(self, gallery: np.ndarray | torch.Tensor, metric: str = "cosine"):
        self.metric = check_metric(metric)
        g = _as_tensor(gallery)
        if metric == "cosine":
            g = normalize(g)
        else:
            self.g_sq = (g * g).sum(1)
        self.g = g

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        """(B, D) query features -> (B, N_g) float32 distances."""
        q = _as_tensor(q)
        if q.shape[1] != self.g.shape[1]:
            raise DistanceError(f"feature dims differ: query {q.shape[1]}, gallery {self.g.shape[1]}")
        if self.metric == "cosine":
            d = torch.mm(normalize(q), self.g.t()).neg_().add_(1.0)
        else:
            d = torch.addmm(self.g_sq.unsqueeze(0), q, self.g.t(), alpha=-2.0)
            d.add_((q * q).sum(1, keepdim=True))
        d.clamp_(min=0.0)  # clamp maps -0.0 and rounding negatives to +0.0
        if self.metric == "euclidean":
            d.sqrt_()
        return d


def iter_distance_chunks(query: np.ndarray | torch.Tensor, gallery: np.ndarray | torch.Tensor,
                         metric: str = "cosine", chunk: int = 1024) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(row_start, (b, N_g) distances)`` over query row chunks."""
    fn = DistanceFunction(gallery, metric)
    q = _as_tensor(query)
    for s in range(0, len(q), chunk):
        yield s, fn(q[s:s + chunk])


def compute_distance(query: np.ndarray | torch.Tensor, gallery: np.ndarray | torch.Tensor,
                     metric: str = "cosine", chunk: int = 4096) -> torch.Tensor:
    """Full (N_q, N_g) float32 distance matrix (use ``iter_distance_chunks`` for huge galleries)."""
    q = _as_tensor(query)
    out = torch.empty(len(q), len(_as_tensor(gallery)), dtype=torch.float32)
    for s, d in iter_distance_chunks(q, gallery, metric, chunk):
        out[s:s + len(d)] = d
    return out
