"""LOOK: supervised pre-training with a leave-one-out k-nearest-neighbour loss (Feng et al., ICLR 2022,
arXiv 2110.06014, "Rethinking supervised pre-training for better downstream transferring").

Cross-entropy pulls every image of a class towards one weight vector: a class collapses to one mode.
LOOK only asks each image to share its label with most of its k nearest neighbours, so a class may
stay multi-modal (sub-groups of a person: another camera, another outfit, another city's style).

**Sources, checked 2026-12-07.** What the stored pages give of the paper (its ar5iv copy up to the
start of Sec. 1, the ICLR 2022 poster abstract, a review summary): the loss is the *leave-one-out
classification error of a weighted kNN classifier*; each image only has to share its label with most
of its k nearest neighbours; the implementation "scales well to large datasets". The method section
(the exact weighting, k, the temperature, the memory and its update) is not in the store, and the
authors published no code (Papers with Code lists none), so those are our choices, stated below and
set in the recipes; none is the paper's number. No equation numbers are given: none could be read.

**Objective** (the weighted kNN classifier, leave-one-out). For a unit feature ``z_i`` with label
``y_i`` and its k nearest neighbours ``N_k(i)`` in a feature memory *leaving ``i`` itself out*::

    p(c | i) = sum_{j in N_k(i), y_j = c} exp(z_i . m_j / tau) / sum_{j in N_k(i)} exp(z_i . m_j / tau)
    L = mean_i  - log p(y_i | i)

Choice: the weights ``exp(cosine / tau)`` and ``-log p`` as the differentiable classification error
(the usual weighted-kNN classifier of memory-bank methods, and the cross-entropy it replaces). The
gradient flows into ``z_i`` only; memory entries are constants. Neighbours are the top-k by cosine
similarity; an image whose k neighbours hold no image of its class has ``p = 0`` and no useful
gradient: it adds 0 to the batch sum and is counted (``no_positive``), rather than clamped.

**Memory** (choice, for "scales to large datasets"): one slot per training image, indexed by the
image's dataset index, each slot a momentum average of that image's features,
``m_i <- normalise(mu m_i + (1 - mu) z_i)`` (``memory_momentum``), with the image's label. A slot
is used as a neighbour once written. Leave-one-out is exact: slot ``i`` is never a neighbour of
image ``i``. Under DDP the features, labels and indices of the global batch are gathered, so every
rank holds the same memory.

**Values** (choices): ``k = 200`` (the usual memory-bank kNN classifier size), ``tau = 0.07``,
``memory_momentum = 0.5``, memory size = the training set. The recipes can set all three.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidkit.losses.coke import _gather
from reidkit.losses.look_config import LOOKError, LOOKLossConfig


def look_loss(z: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, memory: torch.Tensor,
              memory_labels: torch.Tensor, filled: torch.Tensor, k: int, temperature: float
              ) -> tuple[torch.Tensor, int]:
    """The leave-one-out weighted-kNN loss of unit rows ``z`` (B, d) with ``labels``/``index`` (B,)
    over ``memory`` (N, d), ``memory_labels`` (N,), ``filled`` (N,) bool.

    Returns ``(loss, no_positive)``: ``sum of -log p(y_i | i)`` over the images that have at least
    one same-label image among their k neighbours, divided by the batch size (so per-rank losses
    average to the global batch's under DDP), and the number of images that have none."""
    with torch.no_grad():  # choose the neighbours without a graph over the whole memory
        sim = z.detach().float() @ memory.float().T                       # (B, N)
        usable = filled[None, :].expand_as(sim).clone()
        usable[torch.arange(len(index), device=z.device), index] = False  # leave one out
        sim = sim.masked_fill(~usable, float("-inf"))
        kk = min(k, memory.shape[0] - 1)
        top, where = sim.topk(kk, dim=1)                                  # (B, k)
    # the similarities to the k chosen neighbours again, with the gradient into z (B x k x d, a copy
    # of the memory rows, so the memory may be updated in place before backward)
    top = torch.where(torch.isfinite(top), torch.einsum("bd,bkd->bk", z.float(), memory[where].float()), top)
    valid = torch.isfinite(top)
    logits = (top / temperature).masked_fill(~valid, float("-inf"))
    same = (memory_labels[where] == labels[:, None]) & valid
    log_all = torch.logsumexp(logits, dim=1)
    log_pos = torch.logsumexp(logits.masked_fill(~same, float("-inf")), dim=1)
    has = same.any(1)
    no_positive = int((~has).sum())
    if not has.any():
        return z.sum() * 0.0, no_positive
    return (log_all[has] - log_pos[has]).sum() / len(z), no_positive


class LOOKLoss(nn.Module):
    """The LOOK loss with its per-image feature memory (buffers ``memory``, ``memory_labels``, ``filled``).

    ``forward(z, labels, index)``: ``z`` (B, d) features of this rank's batch (normalised inside).
    The loss is computed against the memory *before* this batch is written into it.
    """

    def __init__(self, num_instances: int, dim: int, cfg: LOOKLossConfig):
        super().__init__()
        if cfg.k < 1 or cfg.k >= num_instances:
            raise LOOKError(f"look.k={cfg.k}: need 1 <= k < the number of training images ({num_instances})")
        self.cfg = cfg
        self.register_buffer("memory", torch.zeros(num_instances, dim))
        self.register_buffer("memory_labels", torch.full((num_instances,), -1, dtype=torch.long))
        self.register_buffer("filled", torch.zeros(num_instances, dtype=torch.bool))
        self.no_positive = 0

    def forward(self, z: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        z = F.normalize(z.float(), dim=1)
        loss, self.no_positive = look_loss(z, labels, index, self.memory, self.memory_labels, self.filled,
                                           self.cfg.k, self.cfg.temperature)
        self.update(z.detach(), labels, index)
        return loss

    @torch.no_grad()
    def update(self, z: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> None:
        """``m_i <- normalise(mu m_i + (1 - mu) z_i)`` for the global batch (a first write takes ``z_i``)."""
        z, labels, index = _gather(z), _gather(labels), _gather(index)
        mu = self.cfg.memory_momentum
        old = self.memory[index]
        seen = self.filled[index][:, None]
        self.memory[index] = F.normalize(torch.where(seen, mu * old + (1 - mu) * z, z), dim=1)
        self.memory_labels[index] = labels
        self.filled[index] = True


__all__ = ["LOOKError", "LOOKLossConfig", "look_loss", "LOOKLoss"]
