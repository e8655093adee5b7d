import itertools

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from reidkit.data.pseudo_sampler import CameraAwarePKSampler
from reidkit.methods.pseudo_labels import ClusterConfig, DashThreshold, PseudoLabelError, cluster, label_quality

from kreciprocal_reference import blobs


def test_label_quality_against_sklearn_and_brute_force():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 8, 60)
    pred = np.where(rng.random(60) < 0.8, true // 2, -1)  # merges pairs of ids, some outliers
    q = label_quality(pred, true)
    single = pred.copy()
    single[pred < 0] = 100 + np.arange((pred < 0).sum())
    assert q["ari"] == pytest.approx(adjusted_rand_score(true, single))
    assert q["nmi"] == pytest.approx(normalized_mutual_info_score(true, single))
    tp = fp = fn = 0
    for i, j in itertools.combinations(range(60), 2):
        same_pred = pred[i] >= 0 and pred[i] == pred[j]
        same_true = true[i] == true[j]
        tp += same_pred and same_true
        fp += same_pred and not same_true
        fn += same_true and not same_pred
    assert q["pair_precision"] == pytest.approx(tp / (tp + fp))
    assert q["pair_recall"] == pytest.approx(tp / (tp + fn))
    assert q["clusters"] == len(set(pred[pred >= 0])) and q["true_ids"] == 8
    assert q["outliers"] == int((pred < 0).sum())
    none = label_quality(np.full(5, -1), np.arange(5))  # every sample an outlier
    assert none["clusters"] == 0 and none["pair_precision"] == 0.0 and none["outliers"] == 5


def test_cluster_recovers_identities():
    x, lab = blobs(n_ids=25, per_id=12, dim=32, spread=0.8, seed=5)
    pred = cluster(x, ClusterConfig(eps=0.6, min_samples=4))
    q = label_quality(pred, lab)
    assert q["ari"] > 0.9 and q["pair_precision"] > 0.9 and q["clusters"] >= 20
    gcr = cluster(x, ClusterConfig(distance="gcr", eps=0.15, min_samples=4, gcr_k=15))
    assert label_quality(gcr, lab)["ari"] > 0.8
    with pytest.raises(PseudoLabelError, match="eps"):
        cluster(x, ClusterConfig(eps=1.5))


def test_dash_threshold_schedule():
    d = DashThreshold(c=1.0001, gamma=1.27, rho_min=0.05)
    losses = np.array([0.2, 1.0, 3.0, 4.0])
    keep = d.select(losses, t=1)
    assert d.rho_hat == pytest.approx(2.05)
    assert keep.tolist() == [True, True, False, False]
    for t in (1, 2, 5, 40):
        assert d.threshold(t) == pytest.approx(max(1.0001 * 1.27 ** -(t - 1) * 2.05, 0.05))
    assert d.threshold(40) == 0.05  # the floor
    e = DashThreshold()
    e.load_state_dict(d.state_dict())
    assert e.threshold(3) == d.threshold(3)


def test_camera_aware_sampler_properties():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(12), 7)
    labels[:5] = -1                         # outliers are never drawn
    labels[5:7] = 99                        # a pseudo-id seen by one camera only
    cams = rng.integers(0, 4, labels.size)
    cams[5:7] = 3
    s = CameraAwarePKSampler(labels, cams, batch_size=32, num_instances=4, iters=6, seed=3)
    s.set_epoch(2)
    batches = list(s)
    assert len(batches) == 6 and all(len(b) == 32 for b in batches)
    flat = np.concatenate(batches)
    assert (labels[flat] >= 0).all()
    # groups: anchor + K-1 of the same pseudo-id, from other cameras whenever the id has any
    i = 0
    groups = 0
    while i + 4 <= len(flat):
        a, rest = flat[i], flat[i + 1:i + 4]
        assert (labels[rest] == labels[a]).all()
        members = np.flatnonzero(labels == labels[a])
        if (cams[members] != cams[a]).any():
            assert (cams[rest] != cams[a]).all()
        else:
            assert (rest != a).all()
        i += 4
        groups += 1
    assert groups >= 40
    # deterministic by (seed, epoch), different across epochs
    assert [b for b in s] == batches
    s.set_epoch(3)
    assert list(s) != batches
    seeded = CameraAwarePKSampler(labels, cams, 32, 4, 2, seed=3, with_seeds=True)
    b0 = next(iter(seeded))
    assert isinstance(b0[0], tuple) and len(b0) == 32
    with pytest.raises(ValueError, match="outlier"):
        CameraAwarePKSampler(np.full(5, -1), np.zeros(5), 4, 2, 1)
