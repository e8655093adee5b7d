"""Cross-entropy, margin softmax heads and center loss vs per-sample loops with the papers' formulas."""
import math

import pytest
import torch

from reidkit.losses.center import CenterLoss
from reidkit.losses.softmax import MarginSoftmax, cross_entropy


def _ce(logits_row, y, eps=0.0):
    m = max(logits_row)
    lse = m + math.log(sum(math.exp(v - m) for v in logits_row))
    C = len(logits_row)
    return sum(((1 - eps) * (j == y) + eps / C) * (lse - v) for j, v in enumerate(logits_row))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy_with_label_smoothing(eps):
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 5), torch.randint(0, 5, (6,))
    expect = sum(_ce(logits[i].tolist(), int(labels[i]), eps) for i in range(6)) / 6
    assert cross_entropy(logits, labels, eps).item() == pytest.approx(expect, rel=1e-5)


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.mark.parametrize("kind", ["arcface", "cosface", "circle"])
def test_margin_softmax_logits_match_the_formulas(kind):
    torch.manual_seed(1)
    head = MarginSoftmax(4, 3, kind, scale=10.0, margin=0.3)
    with torch.no_grad():
        head.weight.copy_(torch.randn(3, 4))
    feat, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    got = head(feat, labels)
    s, m = 10.0, 0.3
    for i in range(5):
        for j in range(3):
            c = _cos(feat[i].tolist(), head.weight[j].tolist())
            if kind == "cosface":
                v = c - m if j == labels[i] else c
            elif kind == "arcface":
                theta = math.acos(max(-1.0, min(1.0, c)))
                if j != labels[i]:
                    v = c
                elif theta + m <= math.pi:
                    v = math.cos(theta + m)
                else:
                    v = c - m * math.sin(m)
            else:
                if j == labels[i]:
                    v = max(0.0, 1 + m - c) * (c - (1 - m))
                else:
                    v = max(0.0, c + m) * (c - m)
            assert got[i, j].item() == pytest.approx(s * v, abs=1e-4)
    head.eval()
    plain = head(feat, labels)
    assert plain[0, 1].item() == pytest.approx(s * _cos(feat[0].tolist(), head.weight[1].tolist()), abs=1e-4)


def test_arcface_fallback_branch_when_theta_plus_m_exceeds_pi():
    head = MarginSoftmax(2, 2, "arcface", scale=1.0, margin=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    feat = torch.tensor([[-1.0, 0.01]])  # theta ~ pi against class 0
    c = _cos([-1.0, 0.01], [1.0, 0.0])
    assert head(feat, torch.tensor([0]))[0, 0].item() == pytest.approx(c - 0.5 * math.sin(0.5), abs=1e-5)


def test_margin_softmax_unknown_kind():
    with pytest.raises(ValueError, match="unknown margin"):
        MarginSoftmax(4, 3, "sphereface")


def test_center_loss_matches_loop_and_pulls_towards_centres():
    torch.manual_seed(2)
    loss = CenterLoss(3, 4)
    feat, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    expect = sum(sum((feat[i, d] - loss.centers[labels[i], d]).item() ** 2 for d in range(4)) for i in range(6)) / 6
    assert loss(feat, labels).item() == pytest.approx(expect, rel=1e-5)
    at_centres = loss(loss.centers.detach()[labels], labels).item()
    assert at_centres < 1e-6
