import math

import numpy as np
import pytest
import torch

from reidkit.losses.tcl import TripletContrastLoss, logits_kd, triplet_indices


def _hand_tcl(s, t, pids, tau):
    """Written from the formulas (T1)-(T4), one anchor at a time with plain numpy."""
    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    s, t = unit(np.asarray(s, np.float64)), unit(np.asarray(t, np.float64))
    total, count = 0.0, 0
    for a in range(len(s)):
        pos = [j for j in range(len(s)) if pids[j] == pids[a]]
        neg = [j for j in range(len(s)) if pids[j] != pids[a]]
        if not neg:
            continue
        dt = np.linalg.norm(t - t[a], axis=1)
        p = max(pos, key=lambda j: dt[j])
        n = min(neg, key=lambda j: dt[j])
        def probs(x):
            d = np.linalg.norm(x - x[a], axis=1)
            e = np.exp(np.array([-d[p], -d[n]]) / tau)
            return e / e.sum()
        pt, ps = probs(t), probs(s)
        total += float((pt * np.log(pt / ps)).sum())
        count += 1
    return total / count


def test_tcl_equals_the_hand_computation():
    rng = np.random.default_rng(0)
    pids = [0, 0, 1, 1, 2, 2]
    s, t = rng.normal(size=(6, 5)), rng.normal(size=(6, 7))  # different widths: only distances meet
    got = TripletContrastLoss(0.3)(torch.tensor(s), torch.tensor(t), torch.tensor(pids))
    assert float(got) == pytest.approx(_hand_tcl(s, t, pids, 0.3), rel=1e-5)


def test_tcl_is_zero_for_the_same_structure_and_ignores_scale():
    torch.manual_seed(0)
    f = torch.randn(8, 4)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss = TripletContrastLoss(0.1)
    assert float(loss(f * 5.0, f, pids)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(f.flip(0), f, pids)) > 0


def test_tcl_gradient_reaches_the_student_only():
    torch.manual_seed(1)
    s = torch.randn(6, 4, requires_grad=True)
    t = torch.randn(6, 4, requires_grad=True)
    TripletContrastLoss()(s, t, torch.tensor([0, 0, 1, 1, 2, 2])).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


def test_single_identity_batch_gives_zero():
    s = torch.randn(4, 3, requires_grad=True)
    assert float(TripletContrastLoss()(s, torch.randn(4, 3), torch.zeros(4, dtype=torch.long)).detach()) == 0.0


def test_triplet_indices_are_batch_hard():
    d = torch.tensor([[0.0, 0.5, 0.2, 0.9], [0.5, 0.0, 0.3, 0.1], [0.2, 0.3, 0.0, 0.4], [0.9, 0.1, 0.4, 0.0]])
    p, n, valid = triplet_indices(d, torch.tensor([0, 0, 1, 1]))
    assert p.tolist() == [1, 0, 3, 2] and n.tolist() == [2, 3, 0, 1] and valid.all()


def test_logits_kd_matches_hinton():
    torch.manual_seed(2)
    zs, zt = torch.randn(3, 5), torch.randn(3, 5)
    T = 4.0
    pt, ps = torch.softmax(zt / T, 1), torch.softmax(zs / T, 1)
    want = T * T * float((pt * (pt.log() - ps.log())).sum(1).mean())
    assert float(logits_kd(zs, zt, T)) == pytest.approx(want, rel=1e-5)
    assert float(logits_kd(zt, zt)) == pytest.approx(0.0, abs=1e-6)
    assert not math.isnan(float(logits_kd(zs * 100, zt * 100)))
