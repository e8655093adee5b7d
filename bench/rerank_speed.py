"""Re-ranking on a Market- or MSMT17-sized problem: time, peak memory and mAP per method, vs fast-reid's classic.

    uv run python bench/rerank_speed.py [--threads 2] [--methods classic,kreciprocal,gcr,qe,none]
    uv run python bench/rerank_speed.py --size msmt --methods classic,kreciprocal,gcr   # N = 93,820 x 768
    uv run python bench/rerank_speed.py --device cuda --size msmt                        # GPU rows

GPU suite entry point: ``run_gpu_rows(device="cuda") -> list[dict]`` (importable; runs in-process,
reports seconds and peak device memory per case: Market k-reciprocal, MSMT k-reciprocal, GCR and QE).

``--size msmt``: 11,659 queries + 82,161 gallery (MSMT17's test split), 3,060 identities, 15 cameras,
dimension 768 (ViT-B). fast-reid's classic needs ~70 GB there, so it runs at ``--peer-n`` samples in
the same run and its time and memory are extrapolated by (93,820 / n)^2 (both are dominated by its
N x N arrays and their sorts); the table marks those figures "extrapolated".

N = 3,368 + 15,913 = 19,281 features of dimension 384 (ViT-S), synthetic, cosine mAP ~0.8
(see _market_problem.py). Every method runs in its own subprocess so that its peak RSS
(``ru_maxrss``, whole process: Python + torch + features included) is its own. Wall time and
process CPU time (all threads) are both printed: on a shared machine wall time stretches with the
load, CPU time much less.
  * classic:     fast-reid 1.4.0 ``re_ranking`` (the dense numpy algorithm of Zhong et al.), timed from
                 given q-g, q-q and g-g Euclidean distance matrices, as it is called (k1=20, k2=6, l=0.3).
  * kreciprocal: reidkit's sparse k-reciprocal re-ranking, the whole call from features.
  * gcr:         reidkit GCR, official Market config (3 rounds, PVG), features -> features; the row's
                 wall time includes the refined features' cosine distance matrix, and "of which
                 features" is the re-ranking alone (the GPU rows time that part only).
  * qe:          reidkit alpha-QE (k=5, alpha=3), timed like GCR.
  * none:        plain cosine ranking.
mAP/R1/mINP are computed with reidkit's evaluator on each method's output. When classic ran, the
kreciprocal worker also reports the largest absolute difference between the two distance matrices.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
CLASSIC_OUT = HERE.parent / ".cache" / "peers" / "classic_rerank_dist.npy"


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kilobytes


MSMT = dict(n_query=11659, n_gallery=82161, n_ids=3060, n_cams=15, dim=768)


def msmt_sized_features(scale: float = 1.0, seed: int = 0, noise: float = 1.88, cam_shift: float = 0.35,
                        dim: int = MSMT["dim"]):
    """MSMT17-sized synthetic problem (no distractors; every gallery id is a test id), the same model as
    ``_market_problem``: identity centre + camera shift + noise, L2-normalised, generated in float32
    chunks so that the features (288 MB at full size) are the only large allocation."""
    nq, ng, n_ids = (max(1, round(MSMT[k] * scale)) for k in ("n_query", "n_gallery", "n_ids"))
    rng = np.random.default_rng(seed)
    centres = (rng.normal(size=(n_ids, dim)) / np.sqrt(dim)).astype(np.float32)
    cams = (cam_shift * rng.normal(size=(MSMT["n_cams"], dim)) / np.sqrt(dim)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, n_ids, nq), rng.integers(0, n_ids, ng)
    g_pids[:n_ids] = np.arange(n_ids)
    q_cams, g_cams = rng.integers(0, MSMT["n_cams"], nq), rng.integers(0, MSMT["n_cams"], ng)

    def sample(pids, camids):
        out = np.empty((len(pids), dim), dtype=np.float32)
        for s in range(0, len(pids), 8192):
            p, c = pids[s:s + 8192], camids[s:s + 8192]
            x = centres[p] + cams[c] + (noise / np.sqrt(dim)) * rng.standard_normal((len(p), dim), np.float32)
            out[s:s + 8192] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return sample(q_pids, q_cams), sample(g_pids, g_cams), q_pids, g_pids, q_cams, g_cams


def problem(size: str, scale: float = 1.0):
    if size == "msmt":
        return msmt_sized_features(scale)
    from _market_problem import market_sized_features

    return market_sized_features(dim=384, scale=scale)


def run_method(method: str, qf, gf, qc, gc, device: str, distances: bool = True):
    """The timed call of one method; returns a (N_q, N_g) distance (numpy or torch), or for GCR/QE with
    ``distances=False`` the refined features only (the GPU rows time the re-ranking alone)."""
    from reidkit.evaluation.distances import compute_distance
    from reidkit.evaluation.rerank import kreciprocal_rerank, query_expansion
    from reidkit.evaluation.rerank_gcr import gcr

    if method == "kreciprocal":
        return kreciprocal_rerank(qf, gf, 20, 6, 0.3, device=device)
    if method == "gcr":
        q2, g2 = gcr(qf, gf, qc, gc, device=device)
        return compute_distance(q2, g2, "cosine") if distances else (q2, g2)
    if method == "qe":
        q2, g2 = query_expansion(qf, gf, k=5, alpha=3.0, device=device)
        return compute_distance(q2, g2, "cosine") if distances else (q2, g2)
    if method == "none":
        return compute_distance(qf, gf, "cosine")
    raise ValueError(f"unknown method {method}")


def worker(method: str, threads: int, scale: float = 1.0, size: str = "market", device: str = "cpu",
           evaluate: bool = True) -> dict:
    torch.set_num_threads(threads)
    from reidkit.evaluation.distances import compute_distance
    from reidkit.evaluation.metrics import evaluate_distmat

    qf, gf, qp, gp, qc, gc = problem(size, scale)
    extra = {}
    if method == "classic":
        import _peers

        mod = _peers.rerank()
        if mod is None:
            return {"error": "fast-reid could not be fetched"}
        q_g = compute_distance(qf, gf, "euclidean").numpy()
        q_q = compute_distance(qf, qf, "euclidean").numpy()
        g_g = compute_distance(gf, gf, "euclidean").numpy()
        base = rss_gb()
        t, c = time.perf_counter(), time.process_time()
        dist = mod.re_ranking(q_g, q_q, g_g, 20, 6, 0.3)
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
        np.save(CLASSIC_OUT, dist.astype(np.float32))
    else:
        # imports happen before the clock starts, as the classic's module is loaded before its call
        import reidkit.evaluation.rerank  # noqa: F401
        import reidkit.evaluation.rerank_gcr  # noqa: F401

        from reidkit.evaluation.distances import compute_distance

        base = rss_gb()
        t, c = time.perf_counter(), time.process_time()
        try:
            if method in ("gcr", "qe"):  # refined features, then (timed apart too) their distance matrix
                q2, g2 = run_method(method, qf, gf, qc, gc, device, distances=False)
                extra["rerank_s"] = time.perf_counter() - t
                dist = compute_distance(q2, g2, "cosine")
            else:
                dist = run_method(method, qf, gf, qc, gc, device)
        except ValueError as e:
            return {"error": str(e)}
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
        if method == "kreciprocal" and CLASSIC_OUT.is_file() and size == "market":
            extra["max_abs_diff_vs_classic"] = float(np.abs(np.load(CLASSIC_OUT) - dist).max())
    peak = rss_gb()
    out = {"method": method, "seconds": seconds, "cpu_s": cpu, "peak_rss_gb": peak, "rss_before_gb": base,
           "n": len(qf) + len(gf), **extra}
    if evaluate:
        res = evaluate_distmat(np.asarray(dist, dtype=np.float32), qp, gp, qc, gc)
        out.update(mAP=res["mAP"], R1=float(res["cmc"][0]), mINP=res["mINP"])
    return out


def run_gpu_rows(device: str = "cuda", cases=(("market", "kreciprocal"), ("msmt", "kreciprocal"),
                                               ("msmt", "gcr"), ("msmt", "qe")), scale: float = 1.0) -> list[dict]:
    """GPU-suite entry point: each (size, method) case in this process on ``device``; one warm-up call
    on a small problem first (CUDA context, kernels). Rows: bench, case, N, seconds, peak device memory
    (GiB, ``torch.cuda.max_memory_allocated``), peak host RSS so far (GiB)."""
    dev = torch.device(device)
    qf, gf, _, _, qc, gc = problem("market", 0.05)
    for m in {m for _, m in cases}:
        run_method(m, qf, gf, qc, gc, device, distances=False)
    rows, made = [], {}
    for size, method in cases:
        if size not in made:  # generated once per size (MSMT: ~10 s of CPU), outside the clock
            made = {size: problem(size, scale)}
        qf, gf, _, _, qc, gc = made[size]
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        t = time.perf_counter()
        run_method(method, qf, gf, qc, gc, device, distances=False)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
        rows.append({"bench": "rerank_speed", "case": f"{method} {size}", "N": len(qf) + len(gf),
                     "dim": qf.shape[1], "seconds": seconds, "device_peak_gib": peak, "host_peak_gib": rss_gb()})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default="classic,kreciprocal,gcr,qe,none")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="shrink the problem (e.g. 0.5) where the classic's 8.5 GB do not fit")
    ap.add_argument("--size", choices=("market", "msmt"), default="market")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (reidkit's methods; the classic is numpy)")
    ap.add_argument("--peer-n", type=int, default=9640,
                    help="--size msmt: run the classic at about this N and extrapolate (N^2) to 93,820")
    ap.add_argument("--no-eval", action="store_true", help="skip mAP (default for --size msmt)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    evaluate = not args.no_eval and args.size == "market"
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads, args.scale, args.size, args.device, evaluate)))
        return
    if args.size == "msmt" and args.scale == 1.0:
        peer_scale = args.peer_n / 19281  # the classic runs on the Market problem shrunk to ~peer_n
    else:
        peer_scale = None
    CLASSIC_OUT.parent.mkdir(parents=True, exist_ok=True)
    CLASSIC_OUT.unlink(missing_ok=True)
    rows = []
    for m in args.methods.split(","):
        print(f"running {m} ...", flush=True)
        if m == "classic" and peer_scale is not None:
            cmd = ["--size", "market", "--scale", str(peer_scale), "--no-eval"]
        else:
            cmd = ["--size", args.size, "--scale", str(args.scale), "--device", args.device]
            cmd += ["--no-eval"] if not evaluate else []
        out = subprocess.run([sys.executable, __file__, "--worker", m, "--threads", str(args.threads), *cmd],
                             capture_output=True, text=True)
        if out.returncode != 0:
            why = "killed (out of memory?)" if out.returncode < 0 else f"exit code {out.returncode}"
            print(f"   {m} failed: {why}\n{out.stderr[-2000:]}")
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print("  ", rows[-1], flush=True)

    from rich.console import Console
    from rich.table import Table

    classic = next((r for r in rows if r.get("method") == "classic"), None)
    ours = next((r for r in rows if r.get("method") != "classic" and "n" in r), None)
    n = ours["n"] if ours else round(3368 * args.scale) + round(15913 * args.scale)
    dim = 768 if args.size == "msmt" else 384
    if classic and peer_scale is not None:  # extrapolate the classic from its own N to this N
        f = (n / classic["n"]) ** 2
        print(f"classic measured at N = {classic['n']:,}: {classic['seconds']:.1f} s, "
              f"{classic['peak_rss_gb']:.2f} GB; extrapolated x{f:.1f} (N^2) to N = {n:,}")
        classic = {**classic, "method": f"classic (extrapolated from N={classic['n']:,})", "seconds":
                   classic["seconds"] * f, "cpu_s": classic["cpu_s"] * f,
                   "peak_rss_gb": classic["rss_before_gb"] + (classic["peak_rss_gb"] - classic["rss_before_gb"]) * f}
        rows = [classic if r.get("method") == "classic" else r for r in rows]
    table = Table(title=f"Re-ranking, N = {n:,} x {dim}, {args.threads} threads, device {args.device}")
    for col in ("method", "wall (s)", "of which features (s)", "CPU (s)", "speed-up vs classic (wall / CPU)",
                "peak RSS (GB)", "mAP", "R1", "mINP"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        if "error" in r:
            continue
        speed = (f"{classic['seconds'] / r['seconds']:.1f}x / {classic['cpu_s'] / r['cpu_s']:.1f}x"
                 if classic else "-")
        feats = f"{r['rerank_s']:.2f}" if "rerank_s" in r else "-"
        table.add_row(r["method"], f"{r['seconds']:.2f}", feats, f"{r['cpu_s']:.2f}", speed, f"{r['peak_rss_gb']:.2f}",
                      *(f"{r[k]:.4f}" if k in r else "-" for k in ("mAP", "R1", "mINP")))
    Console(width=120).print(table)
    kr = next((r for r in rows if r.get("method") == "kreciprocal"), None)
    if classic and kr and "mAP" in kr and "mAP" in classic:
        print(f"kreciprocal vs classic: mAP difference {kr['mAP'] - classic['mAP']:+.6f}, "
              f"max |distance difference| {kr.get('max_abs_diff_vs_classic', float('nan')):.2e}")


if __name__ == "__main__":
    main()
