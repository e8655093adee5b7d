"""Re-ranking on a Market-sized problem: time, peak memory and mAP per method, vs fast-reid's classic.

    uv run python bench/rerank_speed.py [--threads 2] [--methods classic,kreciprocal,gcr,qe,none]

N = 3,368 + 15,913 = 19,281 features of dimension 384 (ViT-S), synthetic, cosine mAP ~0.8
(see _market_problem.py). Every method runs in its own subprocess so that its peak RSS
(``ru_maxrss``, whole process: Python + torch + features included) is its own. Wall time and
process CPU time (all threads) are both printed: on a shared machine wall time stretches with the
load, CPU time much less.
  * classic:     fast-reid 1.4.0 ``re_ranking`` (the dense numpy algorithm of Zhong et al.), timed from
                 given q-g, q-q and g-g Euclidean distance matrices, as it is called (k1=20, k2=6, l=0.3).
  * kreciprocal: reidkit's sparse k-reciprocal re-ranking, the whole call from features.
  * gcr:         reidkit GCR, official Market config (3 rounds, PVG), features -> features.
  * qe:          reidkit alpha-QE (k=5, alpha=3).
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


def worker(method: str, threads: int, scale: float = 1.0) -> dict:
    torch.set_num_threads(threads)
    from _market_problem import market_sized_features

    from reidkit.evaluation.distances import compute_distance
    from reidkit.evaluation.metrics import evaluate_distmat

    qf, gf, qp, gp, qc, gc = market_sized_features(dim=384, scale=scale)
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
        from reidkit.evaluation.rerank import kreciprocal_rerank, query_expansion
        from reidkit.evaluation.rerank_gcr import gcr

        base = rss_gb()
        t, c = time.perf_counter(), time.process_time()
        if method == "kreciprocal":
            dist = kreciprocal_rerank(qf, gf, 20, 6, 0.3)
        elif method == "gcr":
            q2, g2 = gcr(qf, gf, qc, gc)
            dist = compute_distance(q2, g2, "cosine")
        elif method == "qe":
            q2, g2 = query_expansion(qf, gf, k=5, alpha=3.0)
            dist = compute_distance(q2, g2, "cosine")
        elif method == "none":
            dist = compute_distance(qf, gf, "cosine")
        else:
            return {"error": f"unknown method {method}"}
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
        if method == "kreciprocal" and CLASSIC_OUT.is_file():
            extra["max_abs_diff_vs_classic"] = float(np.abs(np.load(CLASSIC_OUT) - dist).max())
    peak = rss_gb()
    res = evaluate_distmat(np.asarray(dist, dtype=np.float32), qp, gp, qc, gc)
    return {"method": method, "seconds": seconds, "cpu_s": cpu, "peak_rss_gb": peak, "rss_before_gb": base,
            "mAP": res["mAP"], "R1": float(res["cmc"][0]), "mINP": res["mINP"], **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default="classic,kreciprocal,gcr,qe,none")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="shrink the problem (e.g. 0.5) where the classic's 8.5 GB do not fit")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads, args.scale)))
        return
    CLASSIC_OUT.parent.mkdir(parents=True, exist_ok=True)
    CLASSIC_OUT.unlink(missing_ok=True)
    rows = []
    for m in args.methods.split(","):
        print(f"running {m} ...", flush=True)
        out = subprocess.run([sys.executable, __file__, "--worker", m, "--threads", str(args.threads),
                              "--scale", str(args.scale)], capture_output=True, text=True)
        if out.returncode != 0:
            why = "killed (out of memory?)" if out.returncode < 0 else f"exit code {out.returncode}"
            print(f"   {m} failed: {why}\n{out.stderr[-2000:]}")
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print("  ", rows[-1], flush=True)

    from rich.console import Console
    from rich.table import Table

    classic = next((r for r in rows if r.get("method") == "classic"), None)
    n = round(3368 * args.scale) + round(15913 * args.scale)
    table = Table(title=f"Re-ranking, N = {n:,} x 384, {args.threads} threads")
    for col in ("method", "wall (s)", "CPU (s)", "speed-up vs classic (wall / CPU)", "peak RSS (GB)", "mAP", "R1",
                "mINP"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        if "error" in r:
            continue
        speed = (f"{classic['seconds'] / r['seconds']:.1f}x / {classic['cpu_s'] / r['cpu_s']:.1f}x"
                 if classic else "-")
        table.add_row(r["method"], f"{r['seconds']:.2f}", f"{r['cpu_s']:.2f}", speed, f"{r['peak_rss_gb']:.2f}",
                      f"{r['mAP']:.4f}", f"{r['R1']:.4f}", f"{r['mINP']:.4f}")
    Console(width=120).print(table)
    kr = next((r for r in rows if r.get("method") == "kreciprocal"), None)
    if classic and kr:
        print(f"kreciprocal vs classic: mAP difference {kr['mAP'] - classic['mAP']:+.6f}, "
              f"max |distance difference| {kr.get('max_abs_diff_vs_classic', float('nan')):.2e}")


if __name__ == "__main__":
    main()
