"""Batch-hard triplet loss vs a brute-force loop over anchors, and hand-computed cases."""
import math

import pytest
import torch

from reidkit.losses.triplet import TripletLoss, euclidean_distances


def _brute(feat, pids, margin, normalize):
    f = feat.double()
    if normalize:
        f = f / f.norm(dim=1, keepdim=True)
    terms = []
    for a in range(len(f)):
        pos = [math.dist(f[a].tolist(), f[p].tolist()) for p in range(len(f)) if pids[p] == pids[a]]
        neg = [math.dist(f[a].tolist(), f[n].tolist()) for n in range(len(f)) if pids[n] != pids[a]]
        if not neg:
            continue
        gap = max(pos) - min(neg)
        terms.append(math.log1p(math.exp(gap)) if margin is None else max(0.0, gap + margin))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("margin", [None, 0.3])
@pytest.mark.parametrize("normalize", [False, True])
def test_matches_brute_force(margin, normalize):
    torch.manual_seed(0)
    feat = torch.randn(12, 5) * 2
    pids = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    got = TripletLoss(margin, normalize)(feat, pids).item()
    assert got == pytest.approx(_brute(feat, pids, margin, normalize), rel=1e-5, abs=1e-6)


def test_hand_computed_1d_case():
    # points on a line: id 0 at 0 and 1, id 1 at 3 and 7
    feat = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    pids = torch.tensor([0, 0, 1, 1])
    # gaps d_ap - d_an: a0: 1-3=-2, a1: 1-2=-1, a2: 4-2=2, a3: 4-6=-2
    expect = (math.log1p(math.exp(-2)) * 2 + math.log1p(math.exp(-1)) + math.log1p(math.exp(2))) / 4
    assert TripletLoss()(feat, pids).item() == pytest.approx(expect, rel=1e-5)
    # margin 0.5: relu(gap + 0.5): 0, 0, 2.5, 0
    assert TripletLoss(0.5)(feat, pids).item() == pytest.approx(2.5 / 4, rel=1e-5)


def test_gradient_flows_and_single_id_batch_is_zero():
    feat = torch.randn(8, 4, requires_grad=True)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    TripletLoss()(feat, pids).backward()
    assert torch.isfinite(feat.grad).all() and feat.grad.abs().sum() > 0
    one = TripletLoss()(torch.randn(4, 4), torch.zeros(4, dtype=torch.long))
    assert one.item() == 0.0


def test_distance_helper_and_bad_margin():
    x, y = torch.randn(5, 3), torch.randn(4, 3)
    assert torch.allclose(euclidean_distances(x, y), torch.cdist(x, y), atol=1e-4)
    with pytest.raises(ValueError):
        TripletLoss(margin=-1.0)
