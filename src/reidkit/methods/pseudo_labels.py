"""Pseudo-labels for clustering-based USL/UDA: DBSCAN on the sparse k-reciprocal Jaccard distance,
the Dash dynamic-threshold filter, and pseudo-label quality against ground truth.

    labels = cluster(features, ClusterConfig(eps=0.6))          # (N,) int64, -1 = outlier
    quality = label_quality(labels, true_pids)                   # NMI, ARI, pairwise P/R, counts

    labeler = PseudoLabeler(ClusterConfig(eps="auto"), device="auto")   # once per run
    labels = labeler(features, camids)                           # each epoch; eps fixed at the first call
    print(cluster_size_histogram(labels))                        # one line per epoch

* **device** (``auto`` | ``cpu`` | ``cuda``): where the kNN graph, k-reciprocal encoding and Jaccard
  distance run (``auto``: CUDA when available). DBSCAN itself stays on the CPU over the sparse graph
  (a union-find over O(N k) edges; measured in ``bench/cluster_speed.py``). Both devices give the same
  clusters (ARI 1.0).
* **eps='auto'** (issue 16 item 6): estimated from the data at the first clustering and then kept for
  the run: the knee of the sorted k-distance curve of the Jaccard graph, with k = 2 * min_samples
  (each sample's k-th smallest Jaccard distance, itself included; absent pairs count as 1). The knee is
  the point farthest below the chord of the normalised curve (Kneedle). On synthetic data with a known
  number of identities it recovers it where a fixed eps=0.6 over- or under-splits (tests/cluster).

* **DBSCAN** (spec section 6.2 item 3): ``sklearn.cluster.DBSCAN(metric='precomputed')`` on the sparse
  distance (absent pairs are not neighbours, i.e. distance 1 > eps); outliers get -1 and are dropped for
  the epoch (the default filter).
* **GCR distance** (option, seed_modules section B.6): cosine distance of GCR-refined features, kept
  sparse as the kNN graph of the refined features; eps needs re-tuning.
* **Dash** (seed_modules section G): keep samples whose loss under the cluster-memory classifier is at most
  rho_t = max(C * gamma^-(t-1) * rho_hat, rho_min); rho_hat is the mean loss at the first clustering,
  t counts re-clusterings (1-based). Defaults C=1.0001, gamma=1.27, rho_min=0.05.
"""
from __future__ import annotations

import numpy as np

from reidkit.recipes.adapt import ClusterConfig, PseudoLabelError  # noqa: F401 (the recipe's section, re-exported)
from reidkit.utils.arrays import l2_normalise

# scipy.sparse (about 1 s to import) and torch are imported inside the functions that use them.


def distance_graph(features: np.ndarray, cfg: ClusterConfig, camids: np.ndarray | None = None,
                   device: str = "cpu") -> sp.csr_matrix:
    """Sparse (N, N) distance for DBSCAN from (N, D) features; absent pairs are 'far'.

    ``device`` (``auto``/``cpu``/``cuda``): where the graph is built; the result is a scipy CSR either way.
    """
    import scipy.sparse as sp

    from reidkit.evaluation.kreciprocal import jaccard_distance, jaccard_distance_device, knn_graph
    from reidkit.evaluation.knn_graph import resolve_device

    dev = resolve_device(device)
    if cfg.distance == "jaccard":
        if dev.type != "cpu":
            return jaccard_distance_device(features, cfg.k1, cfg.k2, convention="cluster", device=dev)
        return jaccard_distance(features, cfg.k1, cfg.k2, convention="cluster", knn=cfg.knn)
    from reidkit.evaluation.rerank_gcr import GCRConfig, gcr

    x = l2_normalise(features)
    cams = camids if camids is not None and (camids >= 0).all() else None
    # the train set plays the gallery (PVG statistics come from it); no queries
    gcfg = GCRConfig(rounds=cfg.gcr_rounds, pvg=False)
    _, refined = gcr(x[:0], x, None if cams is None else cams[:0], cams, cfg=gcfg, device=dev)
    g = knn_graph(refined, min(cfg.gcr_k, len(refined)), method=cfg.knn, device=dev)
    n, k = g.indices.shape
    cos_dist = np.clip(g.sqdist / 2.0, 0.0, None)  # unit vectors: 1 - cos = |a - b|^2 / 2
    return sp.csr_matrix((cos_dist.ravel(), g.indices.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))


def dbscan_labels(dist: sp.csr_matrix, eps: float, min_samples: int) -> np.ndarray:
    """DBSCAN on a sparse precomputed distance: (N,) int64 labels 0..C-1, -1 for outliers."""
    import scipy.sparse as sp

    from sklearn.cluster import DBSCAN

    dist = sp.csr_matrix(dist)
    dist = ((dist + dist.T) * 0.5).tocsr() if _asymmetric(dist) else dist
    return DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(dist).astype(np.int64)


def _asymmetric(m: sp.csr_matrix) -> bool:
    """The Jaccard distance is symmetric; a kNN graph (GCR option) is not: DBSCAN needs symmetry."""
    return (m != m.T).nnz > 0


def cluster(features: np.ndarray, cfg: ClusterConfig, camids: np.ndarray | None = None,
            device: str = "cpu") -> np.ndarray:
    """Pseudo-labels (N,) int64 for (N, D) features: DBSCAN clusters 0..C-1, outliers -1.

    With ``cfg.eps='auto'`` eps is estimated from this call's graph (:func:`auto_eps`); to keep the
    first epoch's estimate for a whole run use :class:`PseudoLabeler`.
    """
    return PseudoLabeler(cfg, device)(features, camids)


def k_distances(dist: sp.csr_matrix, k: int) -> np.ndarray:
    """(N,) the k-th smallest stored distance of every row, itself (distance 0) included; rows with
    fewer than k stored entries get 1.0 (absent Jaccard pairs have distance 1)."""
    import scipy.sparse as sp

    dist = sp.csr_matrix(dist)
    n = dist.shape[0]
    counts = np.diff(dist.indptr)
    rows = np.repeat(np.arange(n), counts)
    order = np.lexsort((dist.data, rows))  # by row, then by distance
    vals = dist.data[order]
    out = np.ones(n, dtype=np.float64)
    has = counts >= k
    out[has] = vals[dist.indptr[:-1][has] + k - 1]
    return out


def auto_eps(dist: sp.csr_matrix, min_samples: int = 4, lo: float = 0.05, hi: float = 0.95) -> float:
    """Data-driven DBSCAN eps: the knee of the sorted k-distance curve, k = 2 * min_samples.

    The curve (ascending, normalised to [0, 1] on both axes) is compared with its chord; the knee is
    the sample farthest below the chord (Kneedle, Satopaa et al. 2011), i.e. where the distances of
    dense neighbourhoods give way to those of stragglers. Clipped to [lo, hi].
    """
    kd = np.sort(k_distances(dist, 2 * min_samples))
    kd = kd[kd < 1.0] if (kd < 1.0).sum() >= 3 else kd
    if kd.size < 3 or kd[-1] - kd[0] < 1e-9:
        return float(np.clip(kd[-1] if kd.size else hi, lo, hi))
    x = np.linspace(0.0, 1.0, kd.size)
    y = (kd - kd[0]) / (kd[-1] - kd[0])
    return float(np.clip(kd[int(np.argmax(x - y))], lo, hi))


def cluster_size_histogram(labels: np.ndarray) -> str:
    """One line: cluster count, outliers, and how many clusters have 1, 2-3, 4-7, ... members."""
    labels = np.asarray(labels)
    n = labels.size
    outliers = int((labels < 0).sum())
    sizes = np.bincount(labels[labels >= 0]) if n > outliers else np.zeros(0, dtype=np.int64)
    sizes = sizes[sizes > 0]
    head = f"{sizes.size} clusters, {outliers} outliers ({outliers / max(n, 1):.1%})"
    if sizes.size == 0:
        return head
    top = int(np.floor(np.log2(sizes.max())))
    bins = []
    for b in range(top + 1):
        lo, hi = 2 ** b, 2 ** (b + 1) - 1
        c = int(((sizes >= lo) & (sizes <= hi)).sum())
        bins.append(f"{lo}:{c}" if lo == hi else f"{lo}-{hi}:{c}")
    return f"{head}; sizes {' '.join(bins)}; median {int(np.median(sizes))}, largest {int(sizes.max())}"


class PseudoLabeler:
    """Per-run clustering: the distance graph on ``device``, DBSCAN on the CPU, eps fixed for the run.

    With ``cfg.eps='auto'`` the first call estimates eps (:func:`auto_eps`) from its Jaccard graph and
    later calls reuse it, so the radius does not drift with the features. ``eps`` holds the value in
    use (None until then); ``state_dict``/``load_state_dict`` carry it across a resume.
    """

    def __init__(self, cfg: ClusterConfig, device: str = "auto"):
        self.cfg = cfg.validate()
        self.device = device
        self.eps: float | None = None if cfg.eps == "auto" else float(cfg.eps)

    def __call__(self, features: np.ndarray, camids: np.ndarray | None = None) -> np.ndarray:
        features = np.asarray(features, dtype=np.float32)
        if len(features) < 2:
            return np.full(len(features), -1, dtype=np.int64)
        dist = distance_graph(features, self.cfg, camids, self.device)
        if self.eps is None:
            self.eps = auto_eps(dist, self.cfg.min_samples)
        return dbscan_labels(dist, self.eps, self.cfg.min_samples)

    def state_dict(self) -> dict:
        return {"eps": self.eps}

    def load_state_dict(self, state: dict) -> None:
        self.eps = state.get("eps", self.eps)


# --------------------------------------------------------------------------------------------------
# Dash


class DashThreshold:
    """Dash's geometrically shrinking loss threshold rho_t = max(C gamma^-(t-1) rho_hat, rho_min).

    ``rho_hat`` is set by the first :meth:`select` call (mean loss of the clustered samples) unless
    given. State (``state_dict``) is saved with the training state so a resumed run keeps it.
    """

    def __init__(self, c: float = 1.0001, gamma: float = 1.27, rho_min: float = 0.05, rho_hat: float | None = None):
        self.c, self.gamma, self.rho_min, self.rho_hat = c, gamma, rho_min, rho_hat

    def threshold(self, t: int) -> float:
        if self.rho_hat is None:
            raise PseudoLabelError("Dash: rho_hat is not estimated yet")
        return max(self.c * self.gamma ** (-(t - 1)) * self.rho_hat, self.rho_min)

    def select(self, losses: np.ndarray, t: int) -> np.ndarray:
        """Boolean mask (N,) of samples whose loss is <= rho_t (t is 1-based)."""
        losses = np.asarray(losses, dtype=np.float64)
        if self.rho_hat is None:
            self.rho_hat = float(losses.mean()) if losses.size else 0.0
        return losses <= self.threshold(t)

    def state_dict(self) -> dict:
        return {"c": self.c, "gamma": self.gamma, "rho_min": self.rho_min, "rho_hat": self.rho_hat}

    def load_state_dict(self, state: dict) -> None:
        self.c, self.gamma, self.rho_min, self.rho_hat = (state["c"], state["gamma"], state["rho_min"],
                                                          state["rho_hat"])


def memory_losses(features: torch.Tensor, labels: torch.Tensor, memory: torch.Tensor,
                  temperature: float) -> torch.Tensor:
    """Per-sample cross-entropy (N,) of normalised features against memory centroids (C, D)."""
    import torch.nn.functional as F  # here, so that the recipe's ClusterConfig loads without torch

    logits = F.normalize(features.float(), dim=1) @ memory.float().t() / temperature
    return F.cross_entropy(logits, labels.long(), reduction="none")


# --------------------------------------------------------------------------------------------------
# quality against ground truth


def _pairs(counts: np.ndarray) -> float:
    counts = counts.astype(np.float64)
    return float((counts * (counts - 1) / 2).sum())


def label_quality(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Pseudo-label quality of ``pred`` (N,) (-1 = outlier) against identities ``true`` (N,).

    NMI and ARI treat every outlier as its own singleton cluster. Pairwise precision = same-identity
    pairs among pairs put in one cluster; pairwise recall = those among all same-identity pairs (an
    outlier's pairs count as missed). Also: clusters, true ids, outliers, outlier fraction.
    """
    import scipy.sparse as sp

    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    pred = np.asarray(pred, dtype=np.int64)
    true = np.asarray(true, dtype=np.int64)
    if pred.shape != true.shape:
        raise PseudoLabelError(f"label_quality: {pred.shape} predicted vs {true.shape} true labels")
    n = pred.size
    out = pred < 0
    singletons = pred.copy()
    singletons[out] = pred.max(initial=-1) + 1 + np.arange(int(out.sum()))
    inl = ~out
    _, t_inl = np.unique(true[inl], return_inverse=True)
    _, p_inl = np.unique(pred[inl], return_inverse=True)
    shape = (int(p_inl.max(initial=-1)) + 1, int(t_inl.max(initial=-1)) + 1)
    joint = sp.coo_matrix((np.ones(int(inl.sum())), (p_inl, t_inl)), shape=shape).tocsr()
    joint.sum_duplicates()
    tp = _pairs(joint.data)
    pred_pairs = _pairs(np.bincount(p_inl)) if inl.any() else 0.0
    true_pairs = _pairs(np.unique(true, return_counts=True)[1])
    return {
        "nmi": float(normalized_mutual_info_score(true, singletons)) if n else 0.0,
        "ari": float(adjusted_rand_score(true, singletons)) if n else 0.0,
        "pair_precision": tp / pred_pairs if pred_pairs else 0.0,
        "pair_recall": tp / true_pairs if true_pairs else 0.0,
        "clusters": int(len(np.unique(pred[inl]))),
        "true_ids": int(len(np.unique(true))),
        "outliers": int(out.sum()),
        "outlier_frac": float(out.mean()) if n else 0.0,
    }
