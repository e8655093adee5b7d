"""compute_distance (numpy's BLAS into the whole matrix) against float64 loops and the torch path."""
import numpy as np
import pytest
import torch

from reidkit.evaluation.distances import DistanceError, compute_distance, iter_distance_chunks


def brute(q, g, metric):
    q, g = q.astype(np.float64), g.astype(np.float64)
    out = np.empty((len(q), len(g)))
    for i in range(len(q)):
        for j in range(len(g)):
            if metric == "cosine":
                out[i, j] = 1 - q[i] @ g[j] / (np.linalg.norm(q[i]) * np.linalg.norm(g[j]))
            else:
                sq = ((q[i] - g[j]) ** 2).sum()
                out[i, j] = np.sqrt(sq) if metric == "euclidean" else sq
    return out


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "sqeuclidean"])
def test_ragged_chunks_equal_loops_and_the_torch_path(metric):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(23, 9)).astype(np.float32)
    g = rng.normal(size=(31, 9)).astype(np.float32)
    g[4] = q[2]  # a zero distance
    d = compute_distance(q, torch.from_numpy(g), metric, chunk=5)  # 5 chunks, the last of 3 rows
    assert d.dtype == torch.float32 and d.shape == (23, 31)
    # euclidean compared squared: the root of the expansion's rounding at distance 0 is ~1e-3
    power = 2 if metric == "euclidean" else 1
    ref = brute(q, g, metric) ** power
    np.testing.assert_allclose(d.numpy().astype(np.float64) ** power, ref, atol=5e-5 * max(1.0, ref.max()))
    torch_path = torch.cat([c for _, c in iter_distance_chunks(q, g, metric, chunk=7)])
    np.testing.assert_allclose(d.numpy() ** power, torch_path.numpy() ** power, atol=1e-5 * max(1.0, ref.max()))
    assert not np.signbit(d.numpy()).any() and float(d[2, 4]) ** power < 1e-4  # clamped at +0.0


def test_errors_name_the_side_and_row():
    q = np.ones((3, 4), np.float32)
    q[1, 2] = np.nan
    with pytest.raises(DistanceError, match="row 1 is not finite"):
        compute_distance(q, np.ones((5, 4), np.float32))
    with pytest.raises(DistanceError, match="gallery features row 0"):
        compute_distance(np.ones((3, 4), np.float32), np.full((5, 4), np.inf, np.float32))
    with pytest.raises(DistanceError, match="feature dims differ: query 4, gallery 6"):
        compute_distance(np.ones((3, 4), np.float32), np.ones((5, 6), np.float32))
    with pytest.raises(DistanceError, match="unknown metric"):
        compute_distance(np.ones((3, 4), np.float32), np.ones((5, 4), np.float32), "manhattan")
