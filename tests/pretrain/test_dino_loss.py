"""DINO loss against a plain loop over view pairs written from the paper's formula."""
import math

import numpy as np
import pytest
import torch

from reidkit.losses.dino import DINOLoss


def reference_loss(student, teacher, center, ncrops, tau_s, tau_t):
    """Loops over images, view pairs and prototypes; softmax written out by hand."""
    B = len(student) // ncrops
    K = len(student[0])
    total, terms = 0.0, 0
    for t_view in range(2):
        for s_view in range(ncrops):
            if s_view == t_view:
                continue
            pair = 0.0
            for b in range(B):
                zt = [(teacher[t_view * B + b][k] - center[k]) / tau_t for k in range(K)]
                mt = max(zt)
                et = [math.exp(z - mt) for z in zt]
                pt = [e / sum(et) for e in et]
                zs = [student[s_view * B + b][k] / tau_s for k in range(K)]
                ms = max(zs)
                log_norm = ms + math.log(sum(math.exp(z - ms) for z in zs))
                pair += sum(-pt[k] * (zs[k] - log_norm) for k in range(K))
            total += pair / B
            terms += 1
    return total / terms, terms


def test_loss_matches_brute_force_and_skips_same_view():
    torch.manual_seed(0)
    ncrops, B, K = 5, 3, 7
    student = torch.randn(ncrops * B, K, dtype=torch.float64)
    teacher = torch.randn(2 * B, K, dtype=torch.float64)
    loss_fn = DINOLoss(K, ncrops, epochs=10, teacher_temp=0.07, warmup_teacher_temp=0.07)
    loss_fn.center.copy_(torch.randn(1, K))
    center = loss_fn.center[0].tolist()
    got = loss_fn(student, teacher, epoch=0)
    want, terms = reference_loss(student.tolist(), teacher.tolist(), center, ncrops, 0.1, 0.07)
    assert terms == 2 * ncrops - 2  # 18 with the paper's 10 views
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_center_is_ema_of_teacher_batch_mean():
    K = 4
    loss_fn = DINOLoss(K, 2, epochs=1, center_momentum=0.9)
    t1 = torch.tensor([[1.0, 2, 3, 4], [3.0, 2, 1, 0]])
    loss_fn(torch.zeros(4, K), t1, 0)
    np.testing.assert_allclose(loss_fn.center.numpy()[0], 0.1 * np.array([2.0, 2, 2, 2]), rtol=1e-6)
    t2 = torch.tensor([[10.0, 0, 0, 0], [0.0, 0, 0, 10]])
    loss_fn(torch.zeros(4, K), t2, 0)
    want = 0.9 * 0.1 * np.array([2.0, 2, 2, 2]) + 0.1 * np.array([5.0, 0, 0, 5])
    np.testing.assert_allclose(loss_fn.center.numpy()[0], want, rtol=1e-6)
    assert "center" in loss_fn.state_dict()


def test_center_used_before_update():
    """The loss of a step uses the centre from before that step's update (as in DINO)."""
    K, ncrops = 3, 2
    loss_fn = DINOLoss(K, ncrops, epochs=1)
    s, t = torch.randn(2, K), torch.randn(2, K)
    want, _ = reference_loss(s.tolist(), t.tolist(), [0.0] * K, ncrops, 0.1, 0.04)
    assert loss_fn(s, t, 0).item() == pytest.approx(want, rel=1e-5)


def test_teacher_temperature_warmup_schedule():
    loss_fn = DINOLoss(8, 4, epochs=10, teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_teacher_temp_epochs=4)
    temps = [loss_fn.teacher_temp(e) for e in range(10)]
    np.testing.assert_allclose(temps[:4], [0.04, 0.05, 0.06, 0.07])
    assert temps[4:] == [pytest.approx(0.07)] * 6
    assert loss_fn.teacher_temp(50) == pytest.approx(0.07)  # past the end: last value


def test_bad_crop_counts_rejected():
    with pytest.raises(ValueError, match="ncrops"):
        DINOLoss(8, 1, epochs=1)
