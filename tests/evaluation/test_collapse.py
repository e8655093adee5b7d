"""The collapsed-embedding check against a brute-force pairwise cosine, on made-up features."""
from __future__ import annotations

import numpy as np

from reidkit.evaluation.collapse import check_collapse


def brute_mean_cosine(x: np.ndarray) -> float:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    c = u @ u.T
    return float(c[~np.eye(len(x), dtype=bool)].mean())


def test_collapsed_features_as_in_the_issue_are_flagged():
    """Norm ~13.8 for all, pairwise cosine ~0.9995 (issue 16, item 3)."""
    rng = np.random.default_rng(0)
    shared = rng.normal(size=192)
    shared *= 13.8 / np.linalg.norm(shared)
    x = shared + 0.022 * rng.normal(size=(300, 192))
    rep = check_collapse(x.astype(np.float32))
    assert abs(rep.mean_cosine - brute_mean_cosine(x)) < 1e-9
    assert 0.999 < rep.mean_cosine < 1 and rep.collapsed and rep.shared_share > 0.999
    assert "collapsed" in rep.message() and "\n" not in rep.message()


def test_healthy_features_pass():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(20, 64))
    x = np.repeat(centres, 10, axis=0) + 0.3 * rng.normal(size=(200, 64))
    rep = check_collapse(x)
    assert abs(rep.mean_cosine - brute_mean_cosine(x)) < 1e-9
    assert not rep.collapsed


def test_degenerate_inputs():
    assert check_collapse(np.zeros((0, 8))) is None
    assert check_collapse(np.ones((1, 8))) is None
    assert check_collapse(np.zeros((5, 8))) is None
    assert check_collapse(np.ones((5, 8))).collapsed
