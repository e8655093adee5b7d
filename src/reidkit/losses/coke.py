"""CoKe: cluster discrimination with online constrained k-means (Qian et al., CVPR 2022, arXiv 2105.11527).

**Sources, verified 2026-12-07.** The paper's full text is not in the stored pages this project can
search (its ar5iv copy stops after the abstract and the first lines of Sec. 1; the review summaries
give the Figure 1 caption and the list of contributions). The rules below were therefore checked,
line by line, against the authors' official implementation, which the abstract names as the paper's
code (``idstcv/CoKe``: ``coke/builder_single_view.py``, ``builder_double_view.py``,
``builder_multi_view.py`` and the ``run_*.sh`` scripts that produced the paper's ImageNet numbers).
We give no equation numbers: none could be read. Nothing here is copied; the maths is restated.

The state is small and visible, per clustering: the centres ``C`` of epoch ``t - 1`` (used by the
loss), the online centres of epoch ``t`` with their counts (used by the assignment), the dual variables
``rho`` (K,), and the stored labels (one per instance, or the ``label_slots`` largest entries of the
moving-average label). No representation of any instance is kept.

**Objective** (constrained k-means on the unit sphere)::

    min_{C, mu}  sum_i sum_k mu_ik ||x_i - c_k||^2
    s.t.  sum_k mu_ik = 1 (one cluster per instance),   sum_i mu_ik >= gamma_k = r N / K  (minimum size)

``r`` (``min_size_ratio``, 0.4 in every official script) is the fraction of a balanced share every
cluster must at least hold: ``r = 1`` is exact balance, ``r > 1`` has no solution.

**Assignment rule** (from the Lagrangian with one dual variable per size constraint). On the sphere
``||x - c||^2 = 2 - 2 x.c``; with ``rho`` rescaled by 1/2 (the scale folds into the dual step)::

    y_i = argmax_k  x_i . c_k + rho_k

The whole (global) mini-batch is assigned with the same ``rho``, then ``rho`` is updated.

**Dual update** (projected dual ascent as the data stream, one step per global mini-batch of ``B``)::

    rho_k <- max(0, rho_k - eta (n_k / B - r / K))       n_k = |{i in batch : y_i = k}|,  eta = 20

``n_k / B`` is the batch fraction assigned to ``k`` (normalised by the batch size gathered over all
ranks) and ``r / K = gamma_k / N`` its lower bound. A cluster fed less than its bound gains a bonus
until it is fed; one above its bound loses its bonus down to 0 and is then plain k-means (a lower bound,
not a balance). With ``r = 1`` (equality) ``rho`` is not clipped.

**Centres.** The assignment uses *online* centres, updated after every mini-batch as the running mean of
this epoch's members, projected back onto the sphere::

    c_k <- normalise((m_k c_k + sum_{i in batch, y_i = k} x_i) / (m_k + n_k)),   m_k += n_k

``m_k`` counts this epoch's members (reset to 0 at each epoch's start, so the first batch that feeds
``k`` in an epoch replaces its centre). At the end of epoch ``t`` these centres become the loss's
centres ``C^t``. A cluster never fed keeps its centre.

**Single-view loss** (clustering and discrimination decoupled, Figure 1): in epoch ``t`` instance ``i``
is classified towards the label stored for it in epoch ``t - 1`` against the centres of epoch
``t - 1`` (no gradient into them)::

    L_i = - log  exp(z_i . c_{y_i} / T) / sum_k exp(z_i . c_k / T)        T = 0.1 (one view)

with ``z`` the unit output of the prediction head (weight ``beta``) and of the projection head
(``1 - beta``); the single-view script uses ``beta = 1``. The loss is averaged over several clusterings,
K = 3000, 4000, 5000 on ImageNet.

**Variance reduction**, both available:

1. *moving average* (``moving_average``; the single-view script's second stage, the last
   ``1 - moving_average_from`` = 20% of the epochs, 801 of 1001). From stage epoch ``s`` on, each
   instance's label is the running average of its one-hot assignments since ``s``:
   ``ybar <- (1 - f) ybar + f onehot(y)`` with ``f = 1 / (t - s + 1)``, kept sparse to its
   ``label_slots`` (5) largest entries (the smallest is evicted and the rest renormalised); the target
   is ``q_k ∝ exp(ybar_k / label_temp)`` over the stored entries (``label_temp`` 0.5), used from epoch
   ``s + 1`` on. The centres are averaged likewise: ``C^t = normalise((1 - f) C^{t-1} + f
   normalise(M^t))`` with ``M^t`` the plain running mean of epoch ``t``; in this stage the assignment
   uses the fixed ``C^{t-1}``.
2. *multi-view* (``V >= 2`` views per instance, temperature 0.05): the assignment uses the mean of the
   views' unit projections (not renormalised; one assignment per instance, so the dual update is
   unchanged), and view ``v`` is trained towards ``alpha onehot(y) + (1 - alpha) p_other``, with
   ``p_other`` the (detached) softmax of the other view's projection logits, ``alpha = 0.2``; the two
   heads are weighted 1/2 each (``beta = 0.5``).

**Choices where the sources leave one** (and why):

* ``V > 2`` views of equal size: ``p_other`` is the mean of the other ``V - 1`` views' softmax (for
  ``V = 2`` exactly the official rule; the official multi-crop recipe does the same for its small
  crops, which are trained towards the mean of the two large views).
* the moving-average stage is given as a fraction of ``solver.epochs`` (the official script gives the
  epoch, 801 of 1001), so one recipe works for any run length.
* moving average and multi-view together (not combined in any official script): the soft label
  replaces the one-hot term of the multi-view target.
* labels of instances never seen (epoch 0, or an instance the sampler skipped) fall back to the current
  step's assignment, as the official code does in epoch 0.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from reidkit.losses.coke_config import (CoKeError, CoKeLossConfig, check_coke_config, check_coke_problem,
                                         stage_epoch)


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
    """One clustering: K centres, K duals and the stored labels of every instance.

    Buffers (all in ``state_dict``, so a resumed run continues bit-identically): ``centres`` (epoch
    t-1: the loss's), ``online`` and ``counts`` (epoch t's online centres and member counts: the
    assignment's), ``duals``, ``labels`` (N, S) with ``label_val`` (N, S) and ``label_next`` (N,) (slot 0
    is the hard label; in the moving-average stage the S slots hold the largest entries of the averaged
    label and ``label_next`` the slot to evict), ``epochs_done``. ``stage_epoch``: the first epoch of the
    moving-average stage, None for none.
    """

    def __init__(self, num_instances: int, num_clusters: int, dim: int, min_size_ratio: float = 0.4,
                 dual_lr: float = 20.0, label_slots: int = 1, stage_epoch: int | None = None, seed: int = 0):
        super().__init__()
        check_coke_problem(num_instances, [num_clusters], min_size_ratio)
        self.k, self.ratio, self.dual_lr, self.stage = num_clusters, min_size_ratio, dual_lr, stage_epoch
        slots = max(1, label_slots) if stage_epoch is not None else 1
        g = torch.Generator().manual_seed(seed)
        start = F.normalize(torch.randn(num_clusters, dim, generator=g), dim=1)
        self.register_buffer("centres", start.clone())
        self.register_buffer("online", start.clone())
        self.register_buffer("counts", torch.zeros(num_clusters, dtype=torch.long))
        self.register_buffer("duals", torch.zeros(num_clusters))
        self.register_buffer("labels", torch.full((num_instances, slots), -1, dtype=torch.long))
        self.register_buffer("label_val", torch.zeros(num_instances, slots))
        self.register_buffer("label_next", torch.zeros(num_instances, dtype=torch.long))
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))

    @property
    def epoch(self) -> int:
        return int(self.epochs_done)

    def _in_stage(self) -> bool:
        return self.stage is not None and self.epoch >= self.stage

    @torch.no_grad()
    def stored_targets(self, index: torch.Tensor, soft_temp: float = 0.5) -> torch.Tensor:
        """(B, K) targets of instances ``index`` from their stored labels (epoch t-1): one-hot of the
        hard label, or after the first moving-average epoch ``softmax(ybar / soft_temp)`` over the stored
        entries; rows of zeros for instances with no stored label. Read before ``step`` writes."""
        q = torch.zeros(len(index), self.k, device=self.labels.device)
        if self.stage is not None and self.epoch > self.stage and self.labels.shape[1] > 1:
            labs, vals = self.labels[index], self.label_val[index]
            w = torch.where(vals > 0, torch.exp(vals / soft_temp), torch.zeros_like(vals))
            q.scatter_add_(1, labs.clamp_min(0), w)
            return q / q.sum(1, keepdim=True).clamp_min(1e-12)
        hard = self.labels[index, 0]
        seen = hard >= 0
        q[seen] = F.one_hot(hard[seen], self.k).to(q.dtype)
        return q

    @torch.no_grad()
    def step(self, z: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Assign the (global) batch ``z`` (B, d) with instance ids ``index`` (B,), then update the duals,
        the online centres and the stored labels; returns the labels (B,)."""
        stage = self._in_stage()
        z = z.to(self.online.dtype)
        y = constrained_assign(z, self.centres if stage else self.online, self.duals)
        self.duals.copy_(dual_step(self.duals, y, self.dual_lr, self.ratio))
        # running mean of this epoch's members: c <- (m c + sum x) / (m + n); on the sphere in stage 1
        n_b = torch.bincount(y, minlength=self.k)
        fed = torch.nonzero(n_b, as_tuple=True)[0]
        sums = torch.zeros(len(fed), z.shape[1], dtype=z.dtype, device=z.device)
        sums.index_add_(0, torch.searchsorted(fed, y), z)
        m, total = self.counts[fed].to(z.dtype), (self.counts[fed] + n_b[fed]).to(z.dtype)
        new = (self.online[fed] * m[:, None] + sums) / total[:, None]
        self.online[fed] = new if stage else F.normalize(new, dim=1)
        self.counts[fed] += n_b[fed]
        self._record(index, y)
        return y

    @torch.no_grad()
    def _record(self, index: torch.Tensor, y: torch.Tensor) -> None:
        slots = self.labels.shape[1]
        if not self._in_stage() or slots == 1:
            self.labels[index, 0] = y
            return
        if self.epoch == self.stage:  # the stage's first epoch: the average is this one-hot
            self.labels[index] = torch.cat([y[:, None], self.labels.new_full((len(y), slots - 1), -1)], 1)
            self.label_val[index] = torch.cat([torch.ones_like(y[:, None], dtype=self.label_val.dtype),
                                               self.label_val.new_zeros(len(y), slots - 1)], 1)
            self.label_next[index] = 1
            return
        f = 1.0 / (self.epoch - self.stage + 1)
        labs, vals = self.labels[index], self.label_val[index]
        hit = labs == y[:, None]
        has = hit.any(1)
        slot = torch.where(has, hit.to(torch.int8).argmax(1), self.label_next[index])
        rows = torch.arange(len(y), device=y.device)
        evicted = torch.where(has, torch.zeros_like(vals[:, 0]), vals[rows, slot])
        vals[rows, slot] -= evicted
        vals *= ((1.0 - f) / (1.0 - evicted))[:, None]   # ybar <- (1 - f) ybar (renormalised after an eviction)
        vals[rows, slot] += f                            #        + f onehot(y)
        labs[rows, slot] = y
        self.labels[index], self.label_val[index] = labs, vals
        self.label_next[index] = vals.argmin(1)

    @torch.no_grad()
    def end_epoch(self) -> None:
        """The online centres of this epoch become the loss's centres (in the moving-average stage:
        ``C <- normalise((1 - f) C + f normalise(online))``, f = 1 / (t - s + 1)); counts restart."""
        if self._in_stage():
            f = 1.0 / (self.epoch - self.stage + 1)
            self.centres.copy_(F.normalize((1 - f) * self.centres + f * F.normalize(self.online, dim=1), dim=1))
            self.online.copy_(self.centres)
        else:
            self.centres.copy_(self.online)
        self.counts.zero_()
        self.epochs_done += 1


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean_i  - sum_k target_ik log softmax(logits_i)_k."""
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


class CoKeLoss(nn.Module):
    """Several online constrained clusterings and the cluster-discrimination loss over them.

    ``forward(proj, index, pred=None)``: ``proj`` (V, B, d) projection-head outputs of this rank's
    batch in ``V`` views (V = 1: single view), ``pred`` the prediction-head outputs (same shape) or
    None, ``index`` (B,) instance ids. Reads the stored targets, runs one assignment step on the global
    batch, then returns the loss averaged over clusterings, views and heads. ``epochs``: the run's
    length, which places the moving-average stage.
    """

    def __init__(self, num_instances: int, dim: int, cfg: CoKeLossConfig, seed: int = 0, epochs: int | None = None):
        super().__init__()
        check_coke_problem(num_instances, cfg.num_clusters, cfg.min_size_ratio)
        check_coke_config(cfg)
        self.cfg = cfg
        stage = stage_epoch(cfg, epochs)
        self.clusterings = nn.ModuleList(
            OnlineConstrainedKMeans(num_instances, k, dim, cfg.min_size_ratio, cfg.dual_lr, cfg.label_slots, stage,
                                    seed=seed + j) for j, k in enumerate(cfg.num_clusters))

    @torch.no_grad()
    def assign(self, proj: torch.Tensor, index: torch.Tensor) -> list[torch.Tensor]:
        """Targets (B, K) of this rank's instances per clustering: the stored ones (epoch t-1), or this
        step's assignment where none is stored; runs one online step of every clustering on the global
        batch (the mean of the views' unit projections)."""
        if proj.ndim == 2:
            proj = proj[None]
        z = F.normalize(proj.detach().float(), dim=-1).mean(0)
        z_all, idx_all = _gather(z), _gather(index)
        mine = _rank_slice(len(index))
        out = []
        for c in self.clusterings:
            q = c.stored_targets(index, self.cfg.label_temp)
            y = c.step(z_all, idx_all)[mine]
            missing = q.sum(1) == 0
            out.append(torch.where(missing[:, None], F.one_hot(y, c.k).to(q.dtype), q))
        return out

    def forward(self, proj: torch.Tensor, index: torch.Tensor, pred: torch.Tensor | None = None) -> torch.Tensor:
        if proj.ndim == 2:
            proj = proj[None]
            pred = pred[None] if pred is not None else None
        targets = self.assign(proj, index)
        views = proj.shape[0]
        total = proj.new_zeros((), dtype=torch.float32)
        heads = [(proj, 1.0)] if pred is None else [(pred, self.cfg.beta), (proj, 1.0 - self.cfg.beta)]
        for c, q in zip(self.clusterings, targets):
            centres = c.centres.detach()
            logits = {id(out): F.normalize(out.float(), dim=-1) @ centres.T / self.cfg.temperature
                      for out, _ in heads}                                               # (V, B, K)
            if views > 1:  # multi-view: alpha label + (1 - alpha) the other views' prediction
                p = F.softmax(logits[id(proj)].detach(), dim=-1)
                others = (p.sum(0, keepdim=True) - p) / (views - 1)
                q = self.cfg.view_alpha * q[None] + (1 - self.cfg.view_alpha) * others  # (V, B, K)
            for out, w in heads:
                if w == 0:
                    continue
                total = total + w * soft_cross_entropy(logits[id(out)], q.expand(views, -1, -1))
        return total / len(self.clusterings)

    @torch.no_grad()
    def end_epoch(self) -> None:
        for c in self.clusterings:
            c.end_epoch()

    @torch.no_grad()
    def cluster_sizes(self) -> list[torch.Tensor]:
        """This epoch's cluster sizes so far, per clustering."""
        return [c.counts.clone() for c in self.clusterings]


__all__ = ["CoKeError", "check_coke_problem", "check_coke_config", "constrained_assign", "dual_step",
           "OnlineConstrainedKMeans", "CoKeLossConfig", "CoKeLoss", "soft_cross_entropy", "stage_epoch"]
