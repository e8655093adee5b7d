"""LOOK's leave-one-out kNN loss against a loop over samples and neighbours, and its memory."""
import math

import pytest
import torch
import torch.nn.functional as F

from reidkit.losses.look import LOOKError, LOOKLoss, LOOKLossConfig, look_loss


def _loop_loss(z, labels, index, memory, mem_labels, filled, k, tau):
    """Brute force: for each sample, sort the other filled slots by similarity, keep k, weight by exp(s/tau)."""
    terms, none = [], 0
    for i in range(len(z)):
        cands = [(float(z[i] @ memory[j]), j) for j in range(len(memory)) if filled[j] and j != int(index[i])]
        cands.sort(key=lambda t: -t[0])
        nn_ = cands[:k]
        den = sum(math.exp(s / tau) for s, _ in nn_)
        num = sum(math.exp(s / tau) for s, j in nn_ if int(mem_labels[j]) == int(labels[i]))
        if num == 0:
            none += 1
            continue
        terms.append(-math.log(num / den))
    return sum(terms) / len(z), none


def test_loss_equals_a_loop_over_samples_and_neighbours():
    g = torch.Generator().manual_seed(0)
    n, d, b = 40, 6, 10
    memory = F.normalize(torch.randn(n, d, generator=g), dim=1)
    mem_labels = torch.randint(0, 4, (n,), generator=g)
    filled = torch.rand(n, generator=g) < 0.8
    index = torch.randperm(n, generator=g)[:b]
    labels = mem_labels[index]
    z = F.normalize(memory[index] + 0.5 * torch.randn(b, d, generator=g), dim=1)
    for k, tau in ((5, 0.1), (12, 0.5), (100, 0.07)):
        loss, none = look_loss(z, labels, index, memory, mem_labels, filled, k, tau)
        ref, ref_none = _loop_loss(z, labels, index, memory, mem_labels, filled, k, tau)
        assert float(loss) == pytest.approx(ref, rel=1e-5) and none == ref_none


def test_the_sample_itself_is_left_out():
    # slot 0 is the sample itself (identical feature, same label); its only other neighbour has another label
    memory = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    mem_labels = torch.tensor([7, 3, 7])
    z, labels, index = memory[:1], torch.tensor([7]), torch.tensor([0])
    loss, none = look_loss(z, labels, index, memory, mem_labels, torch.ones(3, dtype=torch.bool), 2, 1.0)
    # neighbours are slots 2 (sim 0.6, label 7) and 1 (sim 0): p = e^0.6 / (e^0.6 + 1)
    assert float(loss) == pytest.approx(-math.log(math.exp(0.6) / (math.exp(0.6) + 1)), rel=1e-6)
    # with k = 1 the only neighbour is slot 2 (same label): loss 0; slot 0 never counts
    loss, _ = look_loss(z, labels, index, memory, mem_labels, torch.ones(3, dtype=torch.bool), 1, 1.0)
    assert float(loss) == pytest.approx(0.0, abs=1e-7)
    # leave slot 2 unfilled: no positive neighbour at all
    filled = torch.tensor([True, True, False])
    _, none = look_loss(z, labels, index, memory, mem_labels, filled, 2, 1.0)
    assert none == 1


def test_memory_update_is_a_momentum_average_and_gradients_reach_only_the_batch():
    cfg = LOOKLossConfig(k=2, temperature=0.1, memory_momentum=0.5)
    loss_fn = LOOKLoss(5, 2, cfg)
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, -1.0], [-1.0, 0.0]])
    loss_fn(first, torch.tensor([0, 0, 1, 1, 2]), torch.arange(5))  # first write takes the feature itself
    torch.testing.assert_close(loss_fn.memory, F.normalize(first, dim=1))
    assert loss_fn.filled.all() and loss_fn.memory_labels.tolist() == [0, 0, 1, 1, 2]
    z = torch.tensor([[0.0, 1.0]], requires_grad=True)
    loss = loss_fn(z, torch.tensor([0]), torch.tensor([0]))
    loss.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    torch.testing.assert_close(loss_fn.memory[0], F.normalize(torch.tensor([0.5, 0.5]), dim=0))


def test_k_must_be_smaller_than_the_training_set():
    with pytest.raises(LOOKError, match="look.k"):
        LOOKLoss(10, 4, LOOKLossConfig(k=10))
