"""DINO self-distillation loss with an EMA-centred, sharpened teacher (Caron et al. 2021).

For teacher views ``t`` (the 2 global crops) and student views ``s`` (all crops), with prototype
logits ``z`` (B, K):

    P_t = softmax((z_t - c) / tau_t)          centred and sharpened, no gradient
    log P_s = log_softmax(z_s / tau_s)
    loss = mean over pairs (t, s), s != t, of  mean_batch  sum_k  -P_t[k] * log P_s[k]

``c`` (1, K) is an EMA of the teacher logits' batch mean (momentum 0.9), all-reduced across DDP
ranks; it is a buffer, so it is saved with the loss state. The teacher temperature warms up
linearly from ``warmup_teacher_temp`` to ``teacher_temp`` over ``warmup_teacher_temp_epochs``
epochs, then stays constant (the paper: 0.04 -> 0.04, i.e. constant).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class DINOLoss(nn.Module):
    def __init__(self, out_dim: int, ncrops: int, epochs: int, teacher_temp: float = 0.04,
                 warmup_teacher_temp: float = 0.04, warmup_teacher_temp_epochs: int = 0,
                 student_temp: float = 0.1, center_momentum: float = 0.9, n_teacher_crops: int = 2):
        super().__init__()
        if ncrops < 2 or n_teacher_crops < 1 or n_teacher_crops > ncrops:
            raise ValueError(f"DINOLoss: need ncrops >= 2 and 1 <= n_teacher_crops <= ncrops, got "
                             f"ncrops={ncrops}, n_teacher_crops={n_teacher_crops}")
        self.ncrops, self.n_teacher_crops = ncrops, n_teacher_crops
        self.student_temp, self.center_momentum = student_temp, center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))
        warm = min(warmup_teacher_temp_epochs, epochs)
        self.teacher_temp_schedule = np.concatenate((
            np.linspace(warmup_teacher_temp, teacher_temp, warm),
            np.ones(max(epochs - warm, 0)) * teacher_temp,
        ))

    def teacher_temp(self, epoch: int) -> float:
        return float(self.teacher_temp_schedule[min(epoch, len(self.teacher_temp_schedule) - 1)])

    def forward(self, student_output: torch.Tensor, teacher_output: torch.Tensor, epoch: int) -> torch.Tensor:
        """``student_output`` (ncrops*B, K) and ``teacher_output`` (n_teacher_crops*B, K), views
        stacked view-major (all images of view 0, then view 1, ...). Returns the scalar loss and
        updates the centre with the teacher batch."""
        student = (student_output.float() / self.student_temp).chunk(self.ncrops)
        temp = self.teacher_temp(epoch)
        teacher = F.softmax((teacher_output.float() - self.center) / temp, dim=-1).detach().chunk(self.n_teacher_crops)
        total, n_terms = student_output.new_zeros((), dtype=torch.float32), 0
        for iq, q in enumerate(teacher):
            for v, s in enumerate(student):
                if v == iq:  # the student never predicts the teacher's own view
                    continue
                total = total + torch.sum(-q * F.log_softmax(s, dim=-1), dim=-1).mean()
                n_terms += 1
        self.update_center(teacher_output)
        return total / n_terms

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        """EMA of the (all-reduced) batch mean of the teacher logits."""
        batch_sum = teacher_output.float().sum(dim=0, keepdim=True)
        count = torch.tensor([teacher_output.shape[0]], dtype=torch.float32, device=teacher_output.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_sum)
            dist.all_reduce(count)
        batch_center = batch_sum / count
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))
