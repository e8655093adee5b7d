"""Speed and peak memory of the k-reciprocal Jaccard distance for clustering (k1=30, k2=6).

reidkit's sparse kernel (``reidkit.evaluation.kreciprocal.jaccard_distance``) against the faiss-based
``compute_jaccard_distance`` that cluster-contrast, fast-reid and OpenUnReID share (fast-reid 1.4.0's copy,
its CPU path ``search_option=3``), on synthetic clustered unit-norm features of Market (12,936),
MSMT17 (32,621) and 100,000 training-set sizes. Every case runs in a fresh subprocess so peak RSS is
its own. Where both run, the DBSCAN pseudo-labels (eps=0.6, min_samples=4) are compared by ARI.

    uv run python bench/cluster_speed.py                       # all sizes, peer up to 32,621
    uv run python bench/cluster_speed.py --sizes 12936 --dims 768 --peer-max-n 12936
    uv run python bench/cluster_speed.py --skip-peer           # ours only (the peer is slow)
    uv run python bench/cluster_speed.py --device cuda --sizes 100000 1000000 --dims 384 --skip-peer

USL clustering = kNN graph + k-reciprocal Jaccard + DBSCAN; the table shows the Jaccard part and DBSCAN
(always on the CPU, over the sparse graph) separately. ``--device cuda`` builds the graph on the GPU.

GPU suite entry point: ``run_gpu_rows(device="cuda", sizes=(100_000,)) -> list[dict]`` (importable; runs
in-process: seconds for graph and DBSCAN, peak device memory, clusters per size at D = 384).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def synthetic_features(n: int, d: int, seed: int = 0) -> np.ndarray:
    """(n, d) float32 unit-norm 'clustered-ish' re-ID features: ~25 images per identity (skewed sizes),
    6 cameras each adding its own offset, 8% unclustered images."""
    rng = np.random.default_rng(seed)
    n_ids = max(2, n // 25)
    centres = rng.normal(size=(n_ids, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    cams = rng.normal(size=(6, d)).astype(np.float32)
    cams *= 0.35 / np.linalg.norm(cams, axis=1, keepdims=True)
    pid = rng.choice(n_ids, size=n, p=rng.dirichlet(np.full(n_ids, 3.0)))
    cam = rng.integers(0, 6, size=n)
    x = centres[pid] + cams[cam] + rng.normal(scale=0.9 / np.sqrt(d), size=(n, d)).astype(np.float32)
    noise = rng.random(n) < 0.08
    x[noise] = rng.normal(size=(int(noise.sum()), d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32)


def _peer_module():
    sys.path.insert(0, str(ROOT / "bench"))
    from _peers import fetch

    ev = fetch()
    if ev is None:
        raise SystemExit("could not fetch fastreid==1.4.0 into .cache/peers")
    utils = ev.parent / "utils"
    # import utils/compute_dist.py (and its relative import .faiss_utils) without fastreid/__init__
    pkg = types.ModuleType("_fastreid_utils")
    pkg.__path__ = [str(utils)]
    sys.modules["_fastreid_utils"] = pkg
    import importlib

    return importlib.import_module("_fastreid_utils.compute_dist")


def ours_graph(x: np.ndarray, device: str = "cpu"):
    """reidkit's sparse Jaccard graph (k1=30, k2=6, cluster convention) on ``device``."""
    from reidkit.evaluation.kreciprocal import jaccard_distance, jaccard_distance_device

    if device == "cpu":
        return jaccard_distance(x, 30, 6, convention="cluster")
    return jaccard_distance_device(x, 30, 6, convention="cluster", device=device)


def run_dbscan(dist):
    from sklearn.cluster import DBSCAN

    return DBSCAN(eps=0.6, min_samples=4, metric="precomputed", n_jobs=1).fit_predict(dist)


def run_gpu_rows(device: str = "cuda", sizes=(100_000,), dim: int = 384) -> list[dict]:
    """GPU-suite entry point: USL clustering (graph on ``device`` + DBSCAN on the CPU) per size, in this
    process, after a small warm-up. Rows: bench, case, N, seconds (graph, DBSCAN, total), peak device
    memory (GiB), clusters."""
    import torch

    dev = torch.device(device)
    ours_graph(synthetic_features(2000, dim), device)  # warm-up: CUDA context and kernels
    rows = []
    for n in sizes:
        x = synthetic_features(n, dim)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        dist = ours_graph(x, device)
        t1 = time.perf_counter()
        labels = run_dbscan(dist)
        t2 = time.perf_counter()
        peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
        rows.append({"bench": "cluster_speed", "case": f"USL clustering {n:,} x {dim}", "N": n, "dim": dim,
                     "graph_seconds": t1 - t0, "dbscan_seconds": t2 - t1, "seconds": t2 - t0,
                     "device_peak_gib": peak, "clusters": int(labels.max() + 1)})
        del dist
    return rows


def worker(which: str, n: int, d: int, labels_out: str | None, device: str = "cpu") -> None:
    import torch

    x = synthetic_features(n, d)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    if which == "ours":
        dist = ours_graph(x, device)
        extra = {"nnz_per_row": dist.nnz / n}
    else:
        mod = _peer_module()
        dist = mod.compute_jaccard_distance(torch.from_numpy(x), k1=30, k2=6, search_option=3)
        extra = {}
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out = {"seconds": seconds, "peak_gib": peak, "features_gib": rss_before, **extra}
    t1 = time.perf_counter()
    labels = run_dbscan(dist)
    out["dbscan_seconds"] = time.perf_counter() - t1
    out["peak_with_dbscan_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out["clusters"] = int(labels.max() + 1)
    if labels_out:
        np.save(labels_out, labels)
    print("RESULT " + json.dumps(out), flush=True)


def run_case(which: str, n: int, d: int, labels: str | None, timeout: float, device: str = "cpu") -> dict | None:
    cmd = [sys.executable, __file__, "--worker", which, str(n), str(d), "--device", device]
    cmd += ["--labels", labels] if labels else []
    env = dict(os.environ, REIDKIT_PROGRESS="0")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout {timeout:.0f}s"}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"exit {p.returncode}: {tail[0][:120]}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[12936, 32621, 100000])
    ap.add_argument("--dims", type=int, nargs="+", default=[384, 768])
    ap.add_argument("--peer-max-n", type=int, default=32621, help="run the peer only up to this N")
    ap.add_argument("--peer-dims", type=int, nargs="+", default=[768], help="dims the peer runs at")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto: where reidkit builds the graph")
    ap.add_argument("--worker", nargs=3, metavar=("WHICH", "N", "D"), help=argparse.SUPPRESS)
    ap.add_argument("--labels", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]), args.labels, args.device)
        return

    from rich.console import Console
    from rich.table import Table
    from sklearn.metrics import adjusted_rand_score

    console = Console(width=150)
    console.print(f"k-reciprocal Jaccard (k1=30, k2=6) on {os.cpu_count()} CPU(s), load average "
                  f"{os.getloadavg()[0]:.1f} at start; each case in its own process")
    table = Table(title="Jaccard distance for clustering: reidkit (sparse) vs fast-reid/cluster-contrast (faiss, dense)")
    for col in ("N", "D", f"reidkit s ({args.device})", "reidkit peak GiB", "DBSCAN s", "peer s", "peer peak GiB",
                "speed-up", "memory ratio", "ARI(DBSCAN)"):
        table.add_column(col, justify="right")
    tmp = Path(tempfile.mkdtemp(prefix="cluster_speed_"))
    for n in args.sizes:
        for d in args.dims:
            with_peer = not args.skip_peer and n <= args.peer_max_n and d in args.peer_dims
            lab_o, lab_p = (str(tmp / f"o{n}_{d}.npy"), str(tmp / f"p{n}_{d}.npy")) if with_peer else (None, None)
            console.print(f"N={n:,} D={d}: reidkit ...")
            ours = run_case("ours", n, d, lab_o, args.timeout, args.device)
            peer = None
            if with_peer:
                console.print(f"N={n:,} D={d}: peer (slow) ...")
                peer = run_case("peer", n, d, lab_p, args.timeout)

            def fmt(r, key, f="{:.1f}"):
                return "-" if not r else (r.get("error", "?")[:24] if key not in r else f.format(r[key]))

            speed = mem = ari = "-"
            if ours and peer and "seconds" in ours and "seconds" in peer:
                speed = f"{peer['seconds'] / ours['seconds']:.1f}x"
                mem = f"{peer['peak_gib'] / ours['peak_gib']:.1f}x"
                ari = f"{adjusted_rand_score(np.load(lab_p), np.load(lab_o)):.4f}"
            table.add_row(f"{n:,}", str(d), fmt(ours, "seconds"), fmt(ours, "peak_gib", "{:.2f}"),
                          fmt(ours, "dbscan_seconds"),
                          fmt(peer, "seconds"), fmt(peer, "peak_gib", "{:.2f}"), speed, mem, ari)
            console.print(f"  reidkit {ours}\n  peer {peer}")
    console.print(table)
    console.print(f"load average at end {os.getloadavg()[0]:.1f} (2-core machine shared with other jobs: "
                  "absolute times are noisy, ratios are measured in the same run)")


if __name__ == "__main__":
    main()
