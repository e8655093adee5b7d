"""Data-driven DBSCAN eps (issue 16 item 6) and the per-epoch cluster-size histogram."""
import numpy as np
import pytest
import scipy.sparse as sp

from reidkit.config import from_dict
from reidkit.methods.pseudo_labels import (ClusterConfig, PseudoLabeler, PseudoLabelError, auto_eps, cluster,
                                           cluster_size_histogram, k_distances, label_quality)


def people(n_ids: int, n: int, dim: int, noise: float, cam: float, seed: int):
    """Unit-norm features of ``n_ids`` identities (uneven sizes) seen by 6 cameras, 8% stray images."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n_ids, dim))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    cams = rng.normal(size=(6, dim))
    cams *= cam / np.linalg.norm(cams, axis=1, keepdims=True)
    pid = rng.choice(n_ids, size=n, p=rng.dirichlet(np.full(n_ids, 3.0)))
    x = c[pid] + cams[rng.integers(0, 6, n)] + rng.normal(scale=noise / np.sqrt(dim), size=(n, dim))
    stray = rng.random(n) < 0.08
    x[stray] = rng.normal(size=(int(stray.sum()), dim))
    pid[stray] = -1 - np.arange(int(stray.sum()))  # each stray image its own identity
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), pid


@pytest.mark.parametrize("n_ids,n,dim,noise,cam", [(10, 2000, 64, 1.2, 0.5), (30, 3000, 128, 1.5, 0.4)])
def test_auto_eps_finds_the_number_of_identities(n_ids, n, dim, noise, cam):
    # few people with many crops each, as in the user's street-camera run: a fixed eps=0.6 splits them
    x, pid = people(n_ids, n, dim, noise, cam, seed=1)
    fixed = label_quality(cluster(x, ClusterConfig(eps=0.6)), pid)
    labeler = PseudoLabeler(ClusterConfig(eps="auto"), device="cpu")
    auto = label_quality(labeler(x), pid)
    assert fixed["clusters"] > n_ids + 3  # the failure the data-driven default fixes
    assert auto["clusters"] == n_ids and auto["ari"] > 0.9 > fixed["ari"]
    assert 0.6 < labeler.eps < 0.9


def test_auto_eps_keeps_an_easy_case_right_and_is_fixed_for_the_run():
    x, pid = people(80, 2000, 64, 0.9, 0.35, seed=1)
    labeler = PseudoLabeler(ClusterConfig(eps="auto", min_samples=4), device="cpu")
    q = label_quality(labeler(x), pid)
    assert q["clusters"] == 80 and q["ari"] > 0.95
    eps = labeler.eps
    labeler(x[::-1].copy())  # a later epoch reuses the first epoch's estimate
    assert labeler.eps == eps
    resumed = PseudoLabeler(ClusterConfig(eps="auto"), device="cpu")
    resumed.load_state_dict(labeler.state_dict())
    assert resumed.eps == eps
    assert PseudoLabeler(ClusterConfig(eps=0.55)).eps == 0.55


def test_k_distances_and_knee_by_hand():
    # rows: stored distances (self 0 included); row 2 has fewer than k entries -> 1.0
    d = sp.csr_matrix(np.array([[0, 0.2, 0.5, 0], [0.2, 0, 0.3, 0.4], [0.5, 0.3, 0, 0], [0, 0.4, 0, 0]]))
    d.setdiag(0.0)  # explicit zeros on the diagonal, as the Jaccard graph stores them
    np.testing.assert_allclose(k_distances(d, 2), [0.2, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(k_distances(d, 3), [0.5, 0.3, 0.5, 1.0])
    # a curve flat at 0.1 for 90 samples then rising to 0.9: the knee is at the end of the flat part
    vals = np.r_[np.full(90, 0.1), np.linspace(0.2, 0.9, 10)]
    graph = sp.csr_matrix((np.r_[np.zeros(100), vals], (np.r_[np.arange(100), np.arange(100)],
                                                         np.r_[np.arange(100), (np.arange(100) + 1) % 100])))
    assert auto_eps(graph, min_samples=1) == pytest.approx(0.1)


def test_cluster_size_histogram_by_hand():
    labels = np.array([0] * 5 + [1] * 2 + [2] + [3] * 9 + [-1] * 3)
    assert cluster_size_histogram(labels) == ("4 clusters, 3 outliers (15.0%); sizes 1:1 2-3:1 4-7:1 8-15:1; "
                                              "median 3, largest 9")
    assert cluster_size_histogram(np.full(4, -1)) == "0 clusters, 4 outliers (100.0%)"


def test_eps_setting_from_yaml_and_errors():
    assert from_dict(ClusterConfig, {"eps": "auto"}).eps == "auto"
    assert from_dict(ClusterConfig, {"eps": "0.65"}).eps == 0.65
    assert ClusterConfig().eps == "auto"
    with pytest.raises(PseudoLabelError, match="'auto' or in"):
        ClusterConfig(eps=1.5).validate()
    with pytest.raises(PseudoLabelError, match="'auto' or in"):
        ClusterConfig(eps="median").validate()
