"""CoKe: cluster discrimination with online constrained k-means (Qian et al., CVPR 2022, arXiv 2105.11527).

Equation numbers follow our reading of the paper (v3); only the abstract could be retrieved with
the search tool in this session, so check them against the PDF before quoting them.

The state is small and visible: per clustering, the centres ``C`` (K, d), the dual variables
``rho`` (K,) and one stored label per instance. No representation of any instance is kept.

**Objective** (the paper's constrained k-means, Eq. 3; features and centres on the unit sphere)::

    min_{C, mu}  sum_i sum_k mu_ik ||x_i - c_k||^2
    s.t.  sum_k mu_ik = 1  (one cluster per instance),   sum_i mu_ik >= gamma_k  (minimum size)

with ``gamma_k = r N / K``: ``r`` (``min_size_ratio``, the paper's 0.4) is the fraction of a
balanced share every cluster must at least hold. ``r = 1`` is exact balance, ``r > 1`` has no
solution (``sum_k gamma_k > N``).

**Assignment rule** (Eq. 6-7, from the Lagrangian with one dual variable per size constraint).
On the sphere ``||x - c||^2 = 2 - 2 x.c``, so ``argmin_k ||x_i - c_k||^2 - rho_k`` is, with
``rho`` rescaled by 1/2 (the scale folds into the dual step size)::

    y_i = argmax_k  x_i . c_k + rho_k

**Dual update** (Eq. 8, projected dual ascent as the data stream; one step per mini-batch of
``B`` instances gathered over all ranks)::

    rho_k <- max(0, rho_k - eta (n_k / B - r / K))       n_k = |{i in batch : y_i = k}|

A cluster that receives less than its lower bound ``r/K`` of the stream gets a growing bonus
until it is fed; a cluster above its bound loses its bonus down to 0 and is then plain k-means
(a lower bound, not a balance). With ``r = 1`` the constraint is an equality and ``rho`` is not
clipped. The paper proves that this online rule approaches the batch optimum of the relaxed
problem; ``tests/losses/test_coke.py`` checks the sizes on a stream against the bound and the
online objective against the exact LP optimum.

**Centres** (Eq. 4, the k-means step from the assignments): during epoch ``t`` the assignment uses
the centres of epoch ``t - 1``; the assigned features are summed per cluster and at the end of the
epoch ``c_k = normalise(sum_{i: y_i = k} x_i)``. A cluster that received nothing keeps its centre.

**Single-view loss** (Eq. 9; clustering and discrimination decoupled): in epoch ``t`` instance
``i`` is trained towards the label it got in epoch ``t - 1``, against the centres of epoch ``t - 1``
(fixed, no gradient)::

    L_i = - log  exp(z_i . c_{y_i} / T) / sum_k exp(z_i . c_k / T)

averaged over the clusterings (the paper uses several, K = 3000, 4000, 5000 on ImageNet). With a
prediction head the loss is ``beta L(pred) + (1 - beta) L(proj)`` (the official ``coke-beta``).

**Variance reduction** (Sec. 3.4), both available:

1. *moving average* (``soft_labels > 0``): keep each instance's last ``L`` assignments (this
   step's included, from epoch 1 on); the target
   is their frequency sharpened with ``soft_temp``: ``q_k ∝ f_k^(1 / soft_temp)``; the centres are
   averaged across epochs (``centre_momentum``).
2. *multi-view*: with ``V >= 2`` views per instance the assignment is made on the normalised mean of
   the views (an averaged, lower-variance feature; one assignment per instance, so the dual update
   is unchanged), and every view is trained on the label.

**Choices where the paper leaves one** (and why):

* epoch 0 has no previous labels or centres: centres start as seeded random unit vectors, and in
  epoch 0 the target is the current step's assignment (detached). Random centres plus the dual
  variables already give K non-empty clusters, so the first epoch trains on a spread of labels.
* the dual step uses the global mini-batch (all ranks gathered) and the whole batch is assigned with
  the same ``rho`` before it is updated: a mini-batch version of the per-instance stream, identical on
  every rank, so centres and duals stay synchronised without any extra all-reduce.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class CoKeError(ValueError):
    """A CoKe problem that has no solution (K above the dataset size, unsatisfiable minimum size)."""


def check_coke_problem(num_instances: int, ks: list[int] | tuple[int, ...], min_size_ratio: float,
                       where: str = "coke") -> None:
    """Raise ``CoKeError`` (one line) unless every clustering in ``ks`` can be solved on ``num_instances``."""
    if not ks:
        raise CoKeError(f"{where}.num_clusters is empty: give at least one K, e.g. [3000]")
    for k in ks:
        if k < 2:
            raise CoKeError(f"{where}.num_clusters: K={k}; each clustering needs K >= 2")
        if k > num_instances:
            raise CoKeError(f"{where}.num_clusters: K={k} is larger than the dataset ({num_instances} images); "
                            f"use K <= {num_instances}")
    if not 0.0 <= min_size_ratio <= 1.0:
        raise CoKeError(f"{where}.min_size_ratio={min_size_ratio}: every cluster must hold at least "
                        f"{min_size_ratio} x N/K instances, so the clusters would need {min_size_ratio} x N > N "
                        "instances; use a ratio in [0, 1] (the paper: 0.4)")


@torch.no_grad()
def constrained_assign(z: torch.Tensor, centres: torch.Tensor, duals: torch.Tensor) -> torch.Tensor:
    """``y_i = argmax_k z_i . c_k + rho_k`` for unit rows ``z`` (B, d), ``centres`` (K, d), ``duals`` (K,)."""
    return torch.argmax(z.float() @ centres.float().T + duals.float(), dim=1)


@torch.no_grad()
def dual_step(duals: torch.Tensor, labels: torch.Tensor, lr: float, min_size_ratio: float) -> torch.Tensor:
    """``rho_k - eta (n_k / B - r / K)``, projected onto ``rho >= 0`` unless ``r = 1`` (equality)."""
    k = duals.numel()
    frac = torch.bincount(labels, minlength=k).to(duals.dtype) / labels.numel()
    new = duals - lr * (frac - min_size_ratio / k)
    return new.clamp_min(0.0) if min_size_ratio < 1.0 else new


def _gather(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every DDP rank in rank order (the ranks' batches have equal size)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out)


def _rank_slice(n_local: int) -> slice:
    r = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    return slice(r * n_local, (r + 1) * n_local)


class OnlineConstrainedKMeans(nn.Module):
    """One clustering: K centres, K duals, one label per instance (and the last ``soft_labels`` ones).

    Buffers (all saved in ``state_dict``, so a resumed run continues bit-identically):
    ``centres`` (epoch t-1, used for assignment and loss), ``sums``/``counts`` (this epoch's
    accumulators), ``duals``, ``labels`` (epoch t-1, -1 = none yet), ``new_labels`` (epoch t) and
    ``history`` (N, L) with ``history_pos``.
    """

    def __init__(self, num_instances: int, num_clusters: int, dim: int, min_size_ratio: float = 0.4,
                 dual_lr: float = 20.0, soft_labels: int = 0, centre_momentum: float = 0.0, seed: int = 0):
        super().__init__()
        check_coke_problem(num_instances, [num_clusters], min_size_ratio)
        self.k, self.ratio, self.dual_lr, self.centre_momentum = num_clusters, min_size_ratio, dual_lr, centre_momentum
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("centres", F.normalize(torch.randn(num_clusters, dim, generator=g), dim=1))
        self.register_buffer("sums", torch.zeros(num_clusters, dim))
        self.register_buffer("counts", torch.zeros(num_clusters, dtype=torch.long))
        self.register_buffer("duals", torch.zeros(num_clusters))
        self.register_buffer("labels", torch.full((num_instances,), -1, dtype=torch.long))
        self.register_buffer("new_labels", torch.full((num_instances,), -1, dtype=torch.long))
        self.register_buffer("history", torch.full((num_instances, max(soft_labels, 0)), -1, dtype=torch.long))
        self.register_buffer("history_pos", torch.zeros(num_instances, dtype=torch.long))
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def step(self, z: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Assign the (global) batch ``z`` (B, d) unit rows with instance ids ``index`` (B,), update the
        duals, the centre accumulators and the stored labels; returns the labels (B,)."""
        y = constrained_assign(z, self.centres, self.duals)
        self.duals.copy_(dual_step(self.duals, y, self.dual_lr, self.ratio))
        self.sums.index_add_(0, y, z.to(self.sums.dtype))
        self.counts += torch.bincount(y, minlength=self.k)
        self.new_labels[index] = y
        if self.history.shape[1]:
            pos = self.history_pos[index]
            self.history[index, pos % self.history.shape[1]] = y
            self.history_pos[index] = pos + 1
        return y

    @torch.no_grad()
    def end_epoch(self) -> None:
        """The k-means centre step: ``c_k = normalise(sum of this epoch's features assigned to k)``
        (blended with the old centre by ``centre_momentum``); labels of this epoch become the targets."""
        fed = self.counts > 0
        new = F.normalize(self.sums[fed], dim=1)
        m = self.centre_momentum
        self.centres[fed] = F.normalize(m * self.centres[fed] + (1 - m) * new, dim=1) if m > 0 else new
        fresh = self.new_labels >= 0
        self.labels[fresh] = self.new_labels[fresh]
        self.new_labels.fill_(-1)
        self.sums.zero_()
        self.counts.zero_()
        self.epochs_done += 1

    @torch.no_grad()
    def targets(self, index: torch.Tensor, current: torch.Tensor, soft_temp: float = 0.5) -> torch.Tensor:
        """(B, K) target distribution of instances ``index``: the sharpened frequency of their last
        assignments when soft labels are on, else one-hot of the previous epoch's label; instances with
        no previous label (epoch 0) use ``current``, this step's assignment."""
        prev = self.labels[index]
        hard = torch.where(prev >= 0, prev, current)
        q = F.one_hot(hard, self.k).float()
        if self.history.shape[1] and int(self.epochs_done) > 0:
            hist = self.history[index]
            valid = (hist >= 0).float()
            freq = torch.zeros(len(index), self.k, device=hist.device)
            freq.scatter_add_(1, hist.clamp_min(0), valid)
            have = valid.sum(1) > 0
            sharp = freq.pow(1.0 / soft_temp)
            sharp = sharp / sharp.sum(1, keepdim=True).clamp_min(1e-12)
            q = torch.where(have[:, None], sharp, q)
        return q


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean_i  - sum_k target_ik log softmax(logits_i)_k."""
    return -(target * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


@dataclass
class CoKeLossConfig:
    num_clusters: list[int] = field(default_factory=lambda: [3000, 4000, 5000])  # one clustering per K
    min_size_ratio: float = 0.4     # r: every cluster holds >= r N / K instances
    dual_lr: float = 20.0           # eta
    temperature: float = 0.1        # T (the paper: 0.1 single view, 0.05 two views)
    beta: float = 0.5               # weight of the prediction-head term (1 - beta: projection head)
    soft_labels: int = 0            # L > 0: moving-average soft labels over the last L assignments
    soft_temp: float = 0.5
    centre_momentum: float = 0.0    # > 0: centres averaged across epochs


class CoKeLoss(nn.Module):
    """Several online constrained clusterings and the cluster-discrimination loss over them.

    ``forward(proj, index, pred=None)``: ``proj`` (V, B, d) projection-head outputs of this rank's
    batch in ``V`` views (V = 1: single view), ``pred`` the prediction-head outputs (same shape) or
    None, ``index`` (B,) instance ids. Runs one assignment step on the global batch, then returns the
    loss averaged over clusterings (and views).
    """

    def __init__(self, num_instances: int, dim: int, cfg: CoKeLossConfig, seed: int = 0):
        super().__init__()
        check_coke_problem(num_instances, cfg.num_clusters, cfg.min_size_ratio)
        self.cfg = cfg
        self.clusterings = nn.ModuleList(
            OnlineConstrainedKMeans(num_instances, k, dim, cfg.min_size_ratio, cfg.dual_lr, cfg.soft_labels,
                                    cfg.centre_momentum, seed=seed + j) for j, k in enumerate(cfg.num_clusters))

    @torch.no_grad()
    def assign(self, proj: torch.Tensor, index: torch.Tensor) -> list[torch.Tensor]:
        """One online step of every clustering on the global batch; returns this rank's labels."""
        z = F.normalize(F.normalize(proj.detach().float(), dim=-1).mean(0), dim=-1)
        z_all, idx_all = _gather(z), _gather(index)
        mine = _rank_slice(len(index))
        return [c.step(z_all, idx_all)[mine] for c in self.clusterings]

    def forward(self, proj: torch.Tensor, index: torch.Tensor, pred: torch.Tensor | None = None) -> torch.Tensor:
        if proj.ndim == 2:
            proj = proj[None]
            pred = pred[None] if pred is not None else None
        current = self.assign(proj, index)
        total = proj.new_zeros((), dtype=torch.float32)
        heads = [(proj, 1.0)] if pred is None else [(pred, self.cfg.beta), (proj, 1.0 - self.cfg.beta)]
        for c, y in zip(self.clusterings, current):
            q = c.targets(index, y, self.cfg.soft_temp)
            centres = c.centres.detach()
            for out, w in heads:
                if w == 0:
                    continue
                logits = F.normalize(out.float(), dim=-1) @ centres.T / self.cfg.temperature  # (V, B, K)
                total = total + w * sum(soft_cross_entropy(lv, q) for lv in logits) / len(logits)
        return total / len(self.clusterings)

    @torch.no_grad()
    def end_epoch(self) -> None:
        for c in self.clusterings:
            c.end_epoch()

    @torch.no_grad()
    def cluster_sizes(self) -> list[torch.Tensor]:
        """This epoch's cluster sizes so far, per clustering."""
        return [c.counts.clone() for c in self.clusterings]


__all__ = ["CoKeError", "check_coke_problem", "constrained_assign", "dual_step", "OnlineConstrainedKMeans",
           "CoKeLossConfig", "CoKeLoss", "soft_cross_entropy"]
