"""Evaluation speed on a Market-1501-sized problem: reidkit vs fast-reid's own ranking code, same run.

    uv run python bench/eval_speed.py [--threads 2] [--repeat 3] [--no-python]

3,368 queries x 15,913 gallery (750 ids, 2,793 distractors, 6 cameras), cosine distances of
synthetic features tuned to mAP ~0.8. All methods get the same precomputed float32 distance matrix;
reidkit is also timed from features (distances computed chunk by chunk, never the full matrix).
fast-reid 1.4.0 is fetched into .cache/peers/ (never installed) and its Cython ``rank_cy`` compiled
there. The script checks that mAP, mINP and the whole CMC curve agree and prints the speed ratios.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _market_problem import market_sized_features  # noqa: E402
import _peers  # noqa: E402

from reidkit.evaluation.distances import compute_distance  # noqa: E402
from reidkit.evaluation.featurefile import FeatureSet  # noqa: E402
from reidkit.evaluation.metrics import evaluate, evaluate_distmat  # noqa: E402


def best_of(fn, repeat):
    """Best wall time and best process CPU time (all threads) over ``repeat`` runs, and the result."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return (min(walls), min(cpus)), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--no-python", action="store_true", help="skip fast-reid's pure-python evaluation (~2 min)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    qf, gf, qp, gp, qc, gc = market_sized_features(dim=args.dim)
    dist = compute_distance(qf, gf, "cosine").numpy()
    print(f"problem: {len(qf)} queries x {len(gf)} gallery, dim {args.dim}, {args.threads} threads")

    rows = []  # (name, (wall s, cpu s), mAP, mINP, cmc)
    t, r = best_of(lambda: evaluate_distmat(dist, qp, gp, qc, gc, max_rank=50), args.repeat)
    rows.append(("reidkit, from distances", t, r["mAP"], r["mINP"], r["cmc"]))
    q, g = FeatureSet(qf, qp, qc), FeatureSet(gf, gp, gc)
    t, r = best_of(lambda: evaluate(query=q, gallery=g, metric="cosine", max_rank=50), args.repeat)
    rows.append(("reidkit, from features (incl. distances)", t, r["mAP"], r["mINP"], r["cmc"]))

    cy = _peers.rank_cy()
    if cy is None:
        print("fast-reid could not be fetched: peer timings skipped")
    else:
        t, (cmc, aps, inps) = best_of(lambda: cy.evaluate_cy(dist, qp, gp, qc, gc, 50, False), args.repeat)
        rows.append(("fast-reid 1.4.0 Cython evaluate_cy", t, float(np.mean(aps)), float(np.mean(inps)), cmc))
        if not args.no_python:
            py = _peers.rank_py()
            t, (cmc, aps, inps) = best_of(lambda: py.evaluate_py(dist, qp, gp, qc, gc, 50, False), 1)
            rows.append(("fast-reid 1.4.0 python evaluate_py", t, float(np.mean(aps)), float(np.mean(inps)), cmc))

    from rich.console import Console
    from rich.table import Table

    base = rows[0]
    table = Table(title="Market-sized evaluation (mAP, mINP, CMC@50)")
    for col in ("method", "wall (s)", "CPU (s)", "reidkit speed-up (wall / CPU)", "mAP", "mINP", "R1", "max |dCMC|"):
        table.add_column(col, justify="right" if col != "method" else "left")
    for name, (wall, cpu), m_ap, m_inp, cmc in rows:
        table.add_row(name, f"{wall:.3f}", f"{cpu:.3f}", f"{wall / base[1][0]:.1f}x / {cpu / base[1][1]:.1f}x",
                      f"{m_ap:.6f}", f"{m_inp:.6f}", f"{cmc[0]:.6f}",
                      f"{np.abs(np.asarray(cmc, np.float64) - base[4]).max():.1e}")
    Console(width=120).print(table)
    agree = all(abs(r[2] - base[2]) < 1e-5 and abs(r[3] - base[3]) < 1e-5
                and np.abs(np.asarray(r[4], np.float64) - base[4]).max() < 1e-5 for r in rows)
    print("numbers agree (|diff| < 1e-5):", agree)
    if len(rows) > 2:
        cy_wall, cy_cpu = rows[2][1]
        print(f"speed-up vs fast-reid Cython (wall / CPU): {cy_wall / rows[0][1][0]:.1f}x / "
              f"{cy_cpu / rows[0][1][1]:.1f}x from distances, {cy_wall / rows[1][1][0]:.1f}x / "
              f"{cy_cpu / rows[1][1][1]:.1f}x from features")


if __name__ == "__main__":
    main()
