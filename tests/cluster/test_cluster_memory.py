import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reidkit.losses.cluster_memory import ClusterMemory, cluster_centroids, update_memory


def _unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=-1)


def test_centroids_are_normalised_means_ignoring_outliers():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0], [9.0, 9.0]])
    lab = torch.tensor([0, 0, 1, -1])
    c = cluster_centroids(f, lab)
    s = float(1 / np.sqrt(2))
    assert torch.allclose(c, torch.tensor([[s, s], [0.6, 0.8]]), atol=1e-6)


def test_loss_gradient_and_hard_update_by_hand():
    mem0 = _unit(3, 4, seed=1)
    f = _unit(5, 4, seed=2).requires_grad_(True)
    y = torch.tensor([0, 2, 0, 2, 0])
    cm = ClusterMemory(4, temperature=0.05, momentum=0.2, mode="hard")
    cm.reset(mem0)
    loss = cm(f, y)
    # loss by hand (the inputs are already unit-norm)
    logits = f.detach() @ mem0.T / 0.05
    ref = -torch.log_softmax(logits, 1)[torch.arange(5), y].mean()
    assert torch.allclose(loss.detach(), ref, atol=1e-5)
    loss.backward()
    # gradient w.r.t. the inputs uses the OLD memory
    f2 = f.detach().clone().requires_grad_(True)
    F.cross_entropy(F.normalize(f2, dim=1) @ mem0.T / 0.05, y).backward()
    assert torch.allclose(f.grad, f2.grad, atol=1e-5)
    # memory: hardest (least similar to its centroid) sample per class, new = 0.2 old + 0.8 f_hard
    exp = mem0.clone()
    fd = f.detach()
    for c in (0, 2):
        idx = [i for i in range(5) if y[i] == c]
        sims = [float(fd[i] @ mem0[c]) for i in idx]
        h = idx[int(np.argmin(sims))]
        v = 0.2 * mem0[c] + 0.8 * fd[h]
        exp[c] = v / v.norm()
    assert torch.allclose(cm.features, exp, atol=1e-6)
    assert torch.allclose(cm.features[1], mem0[1])  # absent class untouched


def test_mean_update_is_sequential_per_sample():
    mem = _unit(2, 3, seed=3)
    f = _unit(3, 3, seed=4)
    y = torch.tensor([1, 1, 0])
    exp = mem.clone()
    for i in range(3):
        v = 0.5 * exp[y[i]] + 0.5 * f[i]
        exp[y[i]] = v / v.norm()
    update_memory(mem, f, y, 0.5, "mean")
    assert torch.allclose(mem, exp, atol=1e-6)


def test_memory_state_and_errors():
    cm = ClusterMemory(8)
    with pytest.raises(RuntimeError, match="empty"):
        cm(torch.randn(2, 8), torch.tensor([0, 0]))
    cm.reset(torch.randn(4, 8))
    assert "features" in cm.state_dict() and cm.num_clusters == 4
    with pytest.raises(ValueError, match="hard"):
        ClusterMemory(8, mode="other")
