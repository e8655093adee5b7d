"""Pairwise distances between query and gallery features, in torch, in row chunks.

Two metrics, as in every ReID toolkit:
  * ``cosine``:    ``1 - <x/|x|, y/|y|>``, in [0, 2].
  * ``euclidean``: ``|x - y|`` (``squared=True`` gives ``|x - y|^2``, which ranks identically and
    is what fast-reid / torchreid return; we compute the square and take the root only on demand).

Features may have any finite magnitude for ``cosine``: a row whose squared norm would overflow (or
underflow) float32, e.g. entries of 1e19 and more, is scaled by its largest absolute entry before it
is normalised, so the cosine is that of the features as given. ``euclidean`` needs ``|x|^2`` itself:
features too large for it are refused with a ``DistanceError``, as are NaN or infinite features.

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


def check_features(x: np.ndarray | torch.Tensor, what: str = "features") -> torch.Tensor:
    """(N, D) float32 tensor of ``x``, or a ``DistanceError`` naming ``what`` and the first bad row."""
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise DistanceError(f"{what} must be (N, D), got shape {tuple(t.shape)}")
    t = t.float()
    finite = torch.isfinite(t).all(1)
    if not bool(finite.all()):
        raise DistanceError(f"{what} row {int((~finite).nonzero()[0, 0])} is not finite (NaN or inf)")
    return t


def normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Row-wise L2 normalisation of (N, D); zero rows stay zero; any finite magnitude.

    Rows whose norm overflows or loses precision in float32 (entries beyond ~1e19 or below ~1e-19)
    are first divided by their largest absolute entry; other rows take the plain path unchanged.
    """
    norm = x.norm(dim=1, keepdim=True)
    unsafe = ~torch.isfinite(norm) | ((norm < _TINY_NORM) & (x != 0).any(1, keepdim=True))
    if bool(unsafe.any()):
        rows = unsafe.squeeze(1).nonzero().squeeze(1)
        scaled = x[rows] / x[rows].abs().amax(1, keepdim=True)
        x = x / torch.where(unsafe, 1.0, norm.clamp_min(eps))
        x[rows] = scaled / scaled.norm(dim=1, keepdim=True)
        return x
    return x / norm.clamp_min(eps)


_TINY_NORM = 1e-15  # below this, squares of the entries are near float32's subnormal range
_MAX_SQ_NORM = 1e37  # euclidean: |x|^2 + |y|^2 - 2xy must stay finite in float32


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
        g = check_features(gallery, "gallery features")
        if metric == "cosine":
            g = normalize(g)
        else:
            self.g_sq = self._squared_norms(g, "gallery")
        self.g = g

    @staticmethod
    def _squared_norms(x: torch.Tensor, what: str) -> torch.Tensor:
        sq = (x * x).sum(1)
        if len(sq) and not float(sq.max()) <= _MAX_SQ_NORM:
            row = int(torch.nan_to_num(sq, posinf=float("inf")).argmax())
            raise DistanceError(f"{what} features too large for float32 euclidean distances (row {row}, "
                                f"max |x| = {float(x[row].abs().max()):.3g}): rescale them or use metric 'cosine'")
        return sq

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        """(B, D) query features -> (B, N_g) float32 distances."""
        q = check_features(q, "query features")
        if q.shape[1] != self.g.shape[1]:
            raise DistanceError(f"feature dims differ: query {q.shape[1]}, gallery {self.g.shape[1]}")
        if self.metric == "cosine":
            d = torch.mm(normalize(q), self.g.t()).neg_().add_(1.0)
        else:
            d = torch.addmm(self.g_sq.unsqueeze(0), q, self.g.t(), alpha=-2.0)
            d.add_(self._squared_norms(q, "query").unsqueeze(1))
        d.clamp_(min=0.0)  # clamp maps -0.0 and rounding negatives to +0.0
        if self.metric == "euclidean":
            d.sqrt_()
        return d


class FeatureRows:
    """CPU distances from features, chunk by chunk, as numpy's BLAS GEMM into a caller's buffer.

    Same arithmetic as ``DistanceFunction`` (which prepares the gallery: checks, normalisation,
    squared norms): cosine ``1 - <q, g>``, euclidean ``|q|^2 + |g|^2 - 2<q, g>`` (then the root),
    clamped at +0.0. The GEMM is numpy's (OpenBLAS: 1.5-2x the float32 throughput of torch's MKL on
    AMD CPUs for these wide products), written straight into the caller's buffer: a ranking worker
    reuses one for its next chunk, :func:`compute_distance` passes slices of the whole matrix (a fresh
    output per chunk costs its page faults and a copy). Distances can differ from
    ``DistanceFunction``'s (torch) in the last bit (another BLAS).
    """

    def __init__(self, fn: DistanceFunction, q: torch.Tensor):
        if q.shape[1] != fn.g.shape[1]:
            raise DistanceError(f"feature dims differ: query {q.shape[1]}, gallery {fn.g.shape[1]}")
        self.metric = fn.metric
        self.g = fn.g.numpy()
        if self.metric == "cosine":
            self.q = normalize(q).numpy()
        else:
            self.q, self.q_sq, self.g_sq = q.numpy(), fn._squared_norms(q, "query").numpy(), fn.g_sq.numpy()

    def drop_gallery_columns(self, keep: torch.Tensor | None) -> None:
        """Keep only these gallery entries (junk removed before the GEMM, not after)."""
        if keep is not None:
            self.g = np.ascontiguousarray(self.g[keep.numpy()])
            if self.metric != "cosine":
                self.g_sq = self.g_sq[keep.numpy()]

    def __call__(self, s: int, e: int, out: np.ndarray | None = None) -> np.ndarray:
        """(e - s, N_g) float32 distances of query rows s..e-1, written into ``out`` when given."""
        if out is None:
            out = np.empty((e - s, len(self.g)), np.float32)
        np.matmul(self.q[s:e], self.g.T, out=out)
        if self.metric == "cosine":
            np.subtract(np.float32(1.0), out, out=out)
        else:
            np.multiply(out, np.float32(-2.0), out=out)
            np.add(out, self.g_sq[None, :], out=out)
            np.add(out, self.q_sq[s:e, None], out=out)
        t = torch.from_numpy(out)
        t.clamp_(min=0.0)  # as DistanceFunction: -0.0 and rounding negatives become +0.0
        if self.metric == "euclidean":
            t.sqrt_()
        return out


def iter_distance_chunks(query: np.ndarray | torch.Tensor, gallery: np.ndarray | torch.Tensor,
                         metric: str = "cosine", chunk: int = 1024) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(row_start, (b, N_g) distances)`` over query row chunks."""
    fn = DistanceFunction(gallery, metric)
    q = check_features(query)
    for s in range(0, len(q), chunk):
        yield s, fn(q[s:s + chunk])


def compute_distance(query: np.ndarray | torch.Tensor, gallery: np.ndarray | torch.Tensor,
                     metric: str = "cosine", chunk: int = 4096) -> torch.Tensor:
    """Full (N_q, N_g) float32 distance matrix (use ``iter_distance_chunks`` for huge galleries), on the
    CPU: numpy's BLAS (all its threads) writes each chunk of rows into the matrix itself."""
    q = check_features(query)
    fn = DistanceFunction(gallery, metric)
    if q.device.type != "cpu" or fn.g.device.type != "cpu":
        out = torch.empty(len(q), len(fn.g), dtype=torch.float32)
        for s in range(0, len(q), chunk):
            out[s:s + chunk] = fn(q[s:s + chunk]).cpu()
        return out
    rows = FeatureRows(fn, q)
    out = np.empty((len(q), len(fn.g)), dtype=np.float32)
    for s in range(0, len(q), chunk):
        rows(s, min(len(q), s + chunk), out=out[s:s + chunk])
    return torch.from_numpy(out)
