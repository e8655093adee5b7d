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
    km.online.copy_(centres)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        labels = torch.empty(len(x), dtype=torch.long)
        for s in range(0, len(x), batch):
            idx = perm[s:s + batch]
            labels[idx] = km.step(x[idx], idx)
            km.online.copy_(centres), km.counts.zero_()  # keep the centres fixed: only the duals move
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


def test_online_centres_are_the_running_mean_renormalised_after_every_batch():
    """The official rule: per batch c <- normalise((m c + sum x) / (m + n)), m this epoch's count."""
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(30, 5, generator=g), dim=1)
    km = OnlineConstrainedKMeans(30, 6, 5, min_size_ratio=0.0, dual_lr=0.0, seed=3)
    start = km.centres.clone()
    c, m = start.clone(), [0] * 6
    for s in range(0, 30, 10):  # brute force, one cluster and one point at a time
        y = km.step(x[s:s + 10], torch.arange(s, s + 10))
        expect_y = [int(torch.argmax(c @ x[i])) for i in range(s, s + 10)]
        assert y.tolist() == expect_y
        for j in range(6):
            members = [x[s + i] for i in range(10) if expect_y[i] == j]
            if members:
                c[j] = F.normalize((m[j] * c[j] + sum(members)) / (m[j] + len(members)), dim=0)
                m[j] += len(members)
        torch.testing.assert_close(km.online, c)
    torch.testing.assert_close(km.centres, start)  # the loss's centres wait for the end of the epoch
    km.end_epoch()
    torch.testing.assert_close(km.centres, c)
    assert km.counts.tolist() == [0] * 6


def test_assignment_uses_the_centres_updated_within_the_epoch():
    """A batch moves centre 1 towards 80 degrees; a point at 42 degrees then goes to cluster 1 (38 degrees
    away), not to cluster 0 (42 degrees), which the start-of-epoch centres (0 and 90 degrees) would give."""
    def at(deg):
        r = np.deg2rad(deg)
        return torch.tensor([[np.cos(r), np.sin(r)]], dtype=torch.float32)

    km = OnlineConstrainedKMeans(2, 2, 2, min_size_ratio=0.0, dual_lr=0.0)
    km.centres.copy_(torch.eye(2)), km.online.copy_(torch.eye(2))
    assert km.step(at(80), torch.tensor([0])).tolist() == [1]
    torch.testing.assert_close(km.online[1], at(80)[0])
    assert km.step(at(42), torch.tensor([1])).tolist() == [1]
    assert constrained_assign(at(42), km.centres, km.duals).tolist() == [0]


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
    prev, c1 = km.labels[:, 0].clone(), km.centres.clone()
    z1 = torch.randn(8, d, generator=g)
    loss = loss_fn(z1, idx)
    assert float(loss) == pytest.approx(_brute_loss(F.normalize(z1, dim=1), c1, prev[idx].tolist(), 0.2), rel=1e-5)


def _brute_soft_ce(z, centres, q, temp):
    total = 0.0
    for i in range(len(z)):
        logits = [float(z[i] @ centres[j]) / temp for j in range(len(centres))]
        m = max(logits)
        lse = m + np.log(sum(np.exp(v - m) for v in logits))
        total += -sum(float(q[i][j]) * (logits[j] - lse) for j in range(len(centres)))
    return total / len(z)


def test_two_views_assign_on_the_mean_and_mix_the_label_with_the_other_views_prediction():
    g = torch.Generator().manual_seed(0)
    cfg = CoKeLossConfig(num_clusters=[3, 5], min_size_ratio=0.4, temperature=0.1, beta=0.3, view_alpha=0.2,
                         moving_average=False)
    a, b = CoKeLoss(10, 4, cfg, seed=0), CoKeLoss(10, 4, cfg, seed=0)
    proj, pred, idx = torch.randn(2, 10, 4, generator=g), torch.randn(2, 10, 4, generator=g), torch.arange(10)
    loss = a(proj, idx, pred)
    # by hand: assignment on the plain mean of the two unit views (not renormalised), then for view v the
    # target 0.2 onehot + 0.8 softmax(other view's projection logits), CE per view, head and clustering
    unit = F.normalize(proj, dim=-1)
    zbar = unit.mean(0)
    total = 0.0
    for km in b.clusterings:
        y = torch.argmax(zbar @ km.centres.T + km.duals, dim=1)
        onehot = F.one_hot(y, km.k).float()
        soft = [F.softmax(unit[v] @ km.centres.T / 0.1, dim=1) for v in range(2)]
        for out, w in ((pred, 0.3), (proj, 0.7)):
            for v in range(2):
                q = 0.2 * onehot + 0.8 * soft[1 - v]
                total += w * _brute_soft_ce(F.normalize(out[v], dim=1), km.centres, q, 0.1) / 2
    assert float(loss) == pytest.approx(total / 2, rel=1e-5)


def test_single_view_beta_one_trains_the_prediction_head_alone():
    g = torch.Generator().manual_seed(1)
    cfg = CoKeLossConfig(num_clusters=[4], min_size_ratio=0.4, temperature=0.1, beta=1.0, moving_average=False)
    loss_fn = CoKeLoss(8, 4, cfg, seed=0)
    c0 = loss_fn.clusterings[0].centres.clone()
    proj, pred = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    y = constrained_assign(F.normalize(proj, dim=1), c0, torch.zeros(4))
    loss = loss_fn(proj, torch.arange(8), pred)
    assert float(loss) == pytest.approx(_brute_loss(F.normalize(pred, dim=1), c0, y.tolist(), 0.1), rel=1e-5)


def test_moving_average_label_is_the_mean_of_the_assignments_since_the_stage():
    """Stage from epoch 1, 5 slots: assignments 2, 2, 0, 1 in epochs 1-4 average to (0.25, 0.25, 0.5);
    the target in epoch 5 is softmax over the stored entries at temperature 0.5."""
    km = OnlineConstrainedKMeans(4, 4, 2, min_size_ratio=0.0, label_slots=5, stage_epoch=1)
    one = torch.tensor([0])
    km._record(one, torch.tensor([3]))           # epoch 0, stage 1: the hard label
    km.epochs_done += 1
    torch.testing.assert_close(km.stored_targets(one), torch.tensor([[0.0, 0, 0, 1]]))
    for y in (2, 2, 0, 1):                       # epochs 1-4
        km._record(one, torch.tensor([y]))
        km.epochs_done += 1
        if int(km.epochs_done) == 2:             # after the stage's first epoch: the one-hot average
            torch.testing.assert_close(km.stored_targets(one), torch.tensor([[0.0, 0, 1, 0]]))
    ybar = {2: 0.5, 0: 0.25, 1: 0.25}
    w = {k: np.exp(v / 0.5) for k, v in ybar.items()}
    expect = torch.tensor([[w[0], w[1], w[2], 0.0]]) / sum(w.values())
    torch.testing.assert_close(km.stored_targets(one, 0.5), expect.float())
    assert abs(float(km.label_val[0].sum()) - 1) < 1e-6


def test_moving_average_label_evicts_the_smallest_entry_and_renormalises():
    km = OnlineConstrainedKMeans(3, 3, 2, min_size_ratio=0.0, label_slots=2, stage_epoch=0)
    one = torch.tensor([0])
    for y in (2, 0, 1):  # {2: 1} -> {2: .5, 0: .5} -> evict 2 (first of the tie): {0: .5 * (2/3) / .5, 1: 1/3}
        km._record(one, torch.tensor([y]))
        km.epochs_done += 1
    got = {int(lab): float(v) for lab, v in zip(km.labels[0], km.label_val[0])}
    assert got == pytest.approx({0: 2 / 3, 1: 1 / 3})


def test_moving_average_stage_assigns_on_fixed_centres_and_averages_them():
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(12, 3, generator=g), dim=1)
    km = OnlineConstrainedKMeans(12, 3, 3, min_size_ratio=0.0, dual_lr=0.0, label_slots=5, stage_epoch=1, seed=2)
    km.step(x, torch.arange(12)), km.end_epoch()           # epoch 0: stage 1
    prev = km.centres.clone()
    km.step(x[:6], torch.arange(6))                         # epoch 1 = s: plain running mean, fixed centres
    y = km.step(x[6:], torch.arange(6, 12))
    assert y.tolist() == torch.argmax(x[6:] @ prev.T, dim=1).tolist()
    km.end_epoch()                                          # f = 1 / (1 - 1 + 1) = 1: C = normalise(mean)
    first = km.centres.clone()
    lab = torch.argmax(x @ prev.T, dim=1)
    for j in range(3):
        if (lab == j).any():
            torch.testing.assert_close(first[j], F.normalize(x[lab == j].mean(0), dim=0))
    km.step(x, torch.arange(12)), km.end_epoch()           # epoch 2: f = 1/2
    lab = torch.argmax(x @ first.T, dim=1)
    for j in range(3):
        if (lab == j).any():
            expect = F.normalize(0.5 * first[j] + 0.5 * F.normalize(x[lab == j].mean(0), dim=0), dim=0)
            torch.testing.assert_close(km.centres[j], expect)


def test_stage_epoch_is_a_fraction_of_the_run():
    from reidkit.losses.coke import stage_epoch
    assert stage_epoch(CoKeLossConfig(), 1001) == 801   # the official 801 of 1001
    assert stage_epoch(CoKeLossConfig(moving_average=False), 1001) is None


def test_bad_problems_get_named_errors():
    with pytest.raises(CoKeError, match="larger than the dataset"):
        check_coke_problem(100, [50, 200], 0.4)
    with pytest.raises(CoKeError, match="min_size_ratio"):
        check_coke_problem(100, [10], 1.5)
    with pytest.raises(CoKeError, match="empty"):
        check_coke_problem(100, [], 0.4)
    with pytest.raises(CoKeError):
        CoKeLoss(10, 4, CoKeLossConfig(num_clusters=[20]))
    with pytest.raises(CoKeError, match="view_alpha"):
        CoKeLoss(10, 4, CoKeLossConfig(num_clusters=[2], view_alpha=1.5))
    with pytest.raises(CoKeError, match="label_slots"):
        CoKeLoss(10, 4, CoKeLossConfig(num_clusters=[2], label_slots=0))


def test_state_dict_round_trip_continues_identically():
    g = torch.Generator().manual_seed(0)
    cfg = CoKeLossConfig(num_clusters=[3, 4], label_slots=2, moving_average_from=0.5)
    a = CoKeLoss(12, 4, cfg, epochs=2)
    z = torch.randn(3, 12, 4, generator=g)
    a(z[0], torch.arange(12)), a.end_epoch()
    b = CoKeLoss(12, 4, cfg, seed=99, epochs=2)
    b.load_state_dict(a.state_dict())
    la, lb = a(z[1], torch.arange(12)), b(z[1], torch.arange(12))
    assert torch.equal(la, lb)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
