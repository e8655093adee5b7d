"""CoKe's online constrained k-means against hand-computed cases, brute-force loops and the exact LP."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reidkit.losses.coke import (CoKeError, CoKeLoss, CoKeLossConfig, OnlineConstrainedKMeans, check_coke_problem,
                                 constrained_assign, dual_step)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors on a shared CPU: one thread is far faster than oversubscribed ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_assignment_is_argmax_of_similarity_plus_dual():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert constrained_assign(z, c, torch.zeros(2)).tolist() == [0, 1]
    # a bonus of 1.5 on cluster 1 beats similarity 1 vs 0: both go to 1
    assert constrained_assign(z, c, torch.tensor([0.0, 1.5])).tolist() == [1, 1]


def test_dual_step_matches_the_formula_by_hand():
    duals = torch.tensor([0.1, 0.0, 0.5])
    labels = torch.tensor([0, 0, 0, 2])  # B = 4, K = 3: fractions 0.75, 0, 0.25
    # r = 0.6: lower-bound fraction 0.2; rho - 2 (frac - 0.2) = [-1.0, 0.4, 0.4], clipped at 0
    torch.testing.assert_close(dual_step(duals, labels, 2.0, 0.6), torch.tensor([0.0, 0.4, 0.4]))
    # r = 1 is an equality constraint: no clipping, bound 1/3
    expect = duals - 2.0 * (torch.tensor([0.75, 0.0, 0.25]) - 1 / 3)
    torch.testing.assert_close(dual_step(duals, labels, 2.0, 1.0), expect)


def _skewed_stream(n=400, d=8, seed=0):
    """90% of the points near one direction: plain nearest-centre assignment makes a dominating cluster."""
    g = torch.Generator().manual_seed(seed)
    base = F.normalize(torch.randn(4, d, generator=g), dim=1)
    which = torch.where(torch.rand(n, generator=g) < 0.9, 0, torch.randint(1, 4, (n,), generator=g))
    return F.normalize(base[which] + 0.3 * torch.randn(n, d, generator=g), dim=1), base


def _run_fixed_centres(x, centres, r, lr, epochs=30, batch=20, seed=0):
    """Online assignment over ``epochs`` shuffled passes with the centres held fixed; sizes of the last pass."""
    km = OnlineConstrainedKMeans(len(x), len(centres), x.shape[1], min_size_ratio=r, dual_lr=lr)
    km.centres.copy_(centres)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        labels = torch.empty(len(x), dtype=torch.long)
        for s in range(0, len(x), batch):
            idx = perm[s:s + batch]
            labels[idx] = km.step(x[idx], idx)
        km.counts.zero_(), km.sums.zero_()  # keep the centres fixed: no end_epoch
    return labels, km


def test_stream_respects_the_minimum_cluster_size():
    x, base = _skewed_stream()
    n, k, r = len(x), 4, 0.8  # every cluster must hold >= 0.8 * 400 / 4 = 80 points
    labels, _ = _run_fixed_centres(x, base, r, lr=1.0)
    sizes = torch.bincount(labels, minlength=k)
    assert sizes.min() >= 0.9 * r * n / k, sizes.tolist()
    # and without duals (lr 0) the same stream violates it: the test can fail
    labels0, _ = _run_fixed_centres(x, base, r, lr=0.0)
    assert torch.bincount(labels0, minlength=k).min() < 0.5 * r * n / k


def test_online_objective_approaches_the_exact_lp_optimum():
    from scipy.optimize import linprog

    x, base = _skewed_stream(n=120, seed=1)
    n, k, r = len(x), 4, 0.8
    cost = (2 - 2 * x @ base.T).double().numpy()  # ||x - c||^2 on the sphere
    # LP: min <cost, mu>  s.t. rows sum to 1, columns sum >= r n / k, 0 <= mu <= 1
    a_eq = np.kron(np.eye(n), np.ones((1, k)))
    a_ub = -np.kron(np.ones((1, n)), np.eye(k))
    lp = linprog(cost.ravel(), A_ub=a_ub, b_ub=-np.full(k, r * n / k), A_eq=a_eq, b_eq=np.ones(n), bounds=(0, 1))
    assert lp.status == 0
    labels, _ = _run_fixed_centres(x, base, r, lr=0.1, epochs=60, batch=10)
    online = cost[np.arange(n), labels.numpy()].sum()
    sizes = torch.bincount(labels, minlength=k)
    assert sizes.min() >= 0.85 * r * n / k, sizes.tolist()
    assert online <= lp.fun * 1.02 + 1e-9, (online, lp.fun)
    # unconstrained k-means is cheaper than the LP but infeasible: the constraint is what costs
    assert cost.min(1).sum() < lp.fun


def test_centres_are_the_normalised_mean_of_the_epoch_assignments():
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(30, 5, generator=g), dim=1)
    km = OnlineConstrainedKMeans(30, 6, 5, min_size_ratio=0.0, dual_lr=0.0, seed=3)
    old = km.centres.clone()
    labels = torch.cat([km.step(x[s:s + 10], torch.arange(s, s + 10)) for s in range(0, 30, 10)])
    km.end_epoch()
    for j in range(6):  # brute force: loop over the points of cluster j
        members = [x[i] for i in range(30) if labels[i] == j]
        if members:
            expect = sum(members) / torch.stack(members).sum(0).norm()
            torch.testing.assert_close(km.centres[j], expect)
        else:  # a cluster that received nothing keeps its centre
            torch.testing.assert_close(km.centres[j], old[j])
    assert km.labels.tolist() == labels.tolist() and (km.new_labels == -1).all()


def _brute_loss(z, centres, targets, temp):
    total = 0.0
    for i in range(len(z)):
        logits = [float(z[i] @ centres[j]) / temp for j in range(len(centres))]
        m = max(logits)
        lse = m + np.log(sum(np.exp(v - m) for v in logits))
        total += -(logits[targets[i]] - lse)
    return total / len(z)


def test_loss_uses_previous_epoch_labels_and_centres():
    g = torch.Generator().manual_seed(0)
    n, d = 16, 6
    cfg = CoKeLossConfig(num_clusters=[4], min_size_ratio=0.5, dual_lr=1.0, temperature=0.2)
    loss_fn = CoKeLoss(n, d, cfg, seed=1)
    idx = torch.arange(8)
    z0 = torch.randn(n, d, generator=g)
    # epoch 0: the target is this step's assignment, the centres the initial ones
    c0, duals0 = loss_fn.clusterings[0].centres.clone(), loss_fn.clusterings[0].duals.clone()
    y_now = constrained_assign(F.normalize(z0[idx], dim=1), c0, duals0)
    loss = loss_fn(z0[idx], idx)
    assert float(loss) == pytest.approx(_brute_loss(F.normalize(z0[idx], dim=1), c0, y_now.tolist(), 0.2), rel=1e-5)
    loss_fn(z0[8:], torch.arange(8, 16))
    loss_fn.end_epoch()
    # epoch 1: stored labels and the recomputed centres, whatever this step assigns
    km = loss_fn.clusterings[0]
    prev, c1 = km.labels.clone(), km.centres.clone()
    z1 = torch.randn(8, d, generator=g)
    loss = loss_fn(z1, idx)
    assert float(loss) == pytest.approx(_brute_loss(F.normalize(z1, dim=1), c1, prev[idx].tolist(), 0.2), rel=1e-5)


def test_prediction_head_and_views_mix_by_beta():
    g = torch.Generator().manual_seed(0)
    cfg = CoKeLossConfig(num_clusters=[3, 5], min_size_ratio=0.4, temperature=0.1, beta=0.3)
    a, b = CoKeLoss(10, 4, cfg, seed=0), CoKeLoss(10, 4, cfg, seed=0)
    proj, pred, idx = torch.randn(2, 10, 4, generator=g), torch.randn(2, 10, 4, generator=g), torch.arange(10)
    loss = a(proj, idx, pred)
    # by hand: assignment on the normalised mean of the two views, then CE per view, head and clustering
    zbar = F.normalize(F.normalize(proj, dim=-1).mean(0), dim=-1)
    total = 0.0
    for km in b.clusterings:
        y = constrained_assign(zbar, km.centres, km.duals)
        for out, w in ((pred, 0.3), (proj, 0.7)):
            total += w * sum(_brute_loss(F.normalize(out[v], dim=1), km.centres, y.tolist(), 0.1) for v in range(2)) / 2
    assert float(loss) == pytest.approx(total / 2, rel=1e-5)


def test_soft_labels_are_the_sharpened_frequency_of_the_last_assignments():
    km = OnlineConstrainedKMeans(4, 3, 2, min_size_ratio=0.0, soft_labels=3)
    km.history[0] = torch.tensor([1, 1, 2])
    km.history[1] = torch.tensor([-1, -1, -1])  # nothing recorded: falls back to the hard label
    km.labels[1] = 2
    km.epochs_done += 1
    q = km.targets(torch.tensor([0, 1]), torch.tensor([0, 0]), soft_temp=0.5)
    # frequencies (0, 2/3, 1/3) squared and renormalised: (0, 0.8, 0.2)
    torch.testing.assert_close(q[0], torch.tensor([0.0, 0.8, 0.2]))
    torch.testing.assert_close(q[1], torch.tensor([0.0, 0.0, 1.0]))


def test_history_is_a_ring_of_the_last_assignments():
    km = OnlineConstrainedKMeans(3, 2, 2, min_size_ratio=0.0, dual_lr=0.0, soft_labels=2)
    km.centres.copy_(torch.eye(2))
    for x in ([1.0, 0.0], [0.0, 1.0], [0.0, 1.0]):
        km.step(torch.tensor([x]), torch.tensor([0]))
    assert sorted(km.history[0].tolist()) == [1, 1] and int(km.history_pos[0]) == 3


def test_bad_problems_get_named_errors():
    with pytest.raises(CoKeError, match="larger than the dataset"):
        check_coke_problem(100, [50, 200], 0.4)
    with pytest.raises(CoKeError, match="min_size_ratio"):
        check_coke_problem(100, [10], 1.5)
    with pytest.raises(CoKeError, match="empty"):
        check_coke_problem(100, [], 0.4)
    with pytest.raises(CoKeError):
        CoKeLoss(10, 4, CoKeLossConfig(num_clusters=[20]))


def test_state_dict_round_trip_continues_identically():
    g = torch.Generator().manual_seed(0)
    cfg = CoKeLossConfig(num_clusters=[3, 4], soft_labels=2)
    a = CoKeLoss(12, 4, cfg)
    z = torch.randn(3, 12, 4, generator=g)
    a(z[0], torch.arange(12)), a.end_epoch()
    b = CoKeLoss(12, 4, cfg, seed=99)
    b.load_state_dict(a.state_dict())
    la, lb = a(z[1], torch.arange(12)), b(z[1], torch.arange(12))
    assert torch.equal(la, lb)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
