"""A synthetic problem with Market-1501's exact evaluation sizes, shared by the benchmarks.

3,368 queries and 15,913 gallery images (13,120 of the 750 test identities + 2,793 distractors with
pid 0), 6 cameras. Features are identity centres plus a per-camera shift plus noise on the unit
sphere, with the noise chosen so that plain cosine ranking gives mAP of about 0.8, like a good model.
"""
from __future__ import annotations

import numpy as np

N_QUERY, N_GALLERY, N_IDS, N_CAMS, N_DISTRACTORS = 3368, 15913, 750, 6, 2793


def market_sized_features(dim: int = 384, seed: int = 0, noise: float = 1.88, cam_shift: float = 0.35,
                          scale: float = 1.0):
    """Returns ``(qf, gf, q_pids, g_pids, q_camids, g_camids)``; features (N, dim) float32, L2-normalised.

    ``scale`` < 1 shrinks every count (queries, gallery, identities, distractors) proportionally.
    """
    n_query, n_gallery, n_ids, n_distractors = (max(1, round(v * scale))
                                                for v in (N_QUERY, N_GALLERY, N_IDS, N_DISTRACTORS))
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids + 1, dim)) / np.sqrt(dim)
    cams = rng.normal(size=(N_CAMS, dim)) / np.sqrt(dim)
    n_pos = n_gallery - n_distractors
    g_pids = np.concatenate([rng.integers(1, n_ids + 1, n_pos), np.zeros(n_distractors, np.int64)])
    g_pids[:n_ids] = np.arange(1, n_ids + 1)  # every test identity is in the gallery
    q_pids = rng.integers(1, n_ids + 1, n_query)
    q_camids, g_camids = rng.integers(0, N_CAMS, n_query), rng.integers(0, N_CAMS, n_gallery)

    def sample(pids, camids):
        x = centres[pids] + cam_shift * cams[camids] + noise * rng.normal(size=(len(pids), dim)) / np.sqrt(dim)
        x[pids == 0] = rng.normal(size=(int((pids == 0).sum()), dim))  # distractors: anything
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return (sample(q_pids, q_camids), sample(g_pids, g_camids), q_pids.astype(np.int64), g_pids.astype(np.int64),
            q_camids.astype(np.int64), g_camids.astype(np.int64))
