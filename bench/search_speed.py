"""Gallery search at scale: recall@k of the approximate indexes against exact search, and latency.

    uv run python bench/search_speed.py                 # 1,000,000 x 384 (about 4 GB of RAM at peak)
    uv run python bench/search_speed.py --n 100000      # a quicker run
    uv run python bench/search_speed.py --kinds flat,ivfpq --threads 2

The gallery is synthetic but shaped like ReID features: ``n / 20`` identities, each a random
direction plus per-image noise, so a query's true neighbours are the ~20 images of its identity
(not uniform noise, on which every ANN index looks bad and no real gallery looks like).
Queries are fresh images of gallery identities. Exact inner-product search (faiss IndexFlatIP,
the ``flat`` kind) gives the ground truth and is the peer every approximate index is compared with,
in the same run: recall@k = |approx top-k ∩ exact top-k| / k, batch throughput, and single-query
latency (median and 99th percentile over ``--single`` one-at-a-time queries).
Every index is built by reidkit's own code (``GalleryIndex.build``), with the defaults users get.
"""
from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np


def synthetic(n: int, dim: int, n_queries: int, seed: int, noise: float = 1.0, chunk: int = 100_000):
    """(n, dim) unit gallery and (n_queries, dim) unit queries, generated in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    n_ids = max(1, n // 20)
    centres = rng.standard_normal((n_ids, dim), dtype=np.float32)
    gallery = np.empty((n, dim), np.float32)
    gallery_ids = rng.integers(0, n_ids, n)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block = centres[gallery_ids[start:stop]] + noise * rng.standard_normal((stop - start, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        gallery[start:stop] = block
    query_ids = rng.integers(0, n_ids, n_queries)
    queries = centres[query_ids] + noise * rng.standard_normal((n_queries, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return gallery, gallery_ids, queries, query_ids


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a[:k]) & set(e)) / k for a, e in zip(approx, exact)]))


def timed_search(index, queries: np.ndarray, k: int, single: int) -> dict:
    t = time.perf_counter()
    res = index.search(queries, k)
    batch_s = time.perf_counter() - t
    lat = []
    for q in queries[:single]:
        t = time.perf_counter()
        index.search(q[None], k)
        lat.append(time.perf_counter() - t)
    lat_ms = np.array(lat) * 1e3
    return {"ids": res.ids, "qps": len(queries) / batch_s, "p50_ms": float(np.median(lat_ms)),
            "p99_ms": float(np.percentile(lat_ms, 99))}


def with_refinement(plain, gallery: np.ndarray, refine: str):
    """``plain`` IVF-PQ wrapped exactly as ``GalleryIndex.build(kind='ivfpq', refine=...)`` builds it
    (faiss IndexRefine over SQ8 or flat copies), reusing its training so the bench trains once."""
    import copy

    import faiss

    d = gallery.shape[1]
    if refine == "sq8":
        fine = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        fine.train(gallery)
    else:
        fine = faiss.IndexFlatIP(d)
    fine.add(gallery)
    wrapped = faiss.IndexRefine(plain.faiss, fine)
    wrapped.k_factor = 4
    out = copy.copy(plain)
    out.faiss, out.params = wrapped, {**plain.params, "refine": refine}
    out._keep = (plain.faiss, fine)  # the wrapper does not own its parts
    return out


def index_bytes(gi) -> int:
    import faiss

    return int(faiss.serialize_index(gi.faiss).nbytes) if gi.kind != "flat" or len(gi) <= 2_000_000 else 0


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="gallery size")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--kinds", default="ivfpq,ivfpq+sq8,hnsw",
                    help="approximate kinds to compare with flat; ivfpq = PQ codes only, ivfpq+sq8 = re-scored "
                         "with 8-bit copies (reidkit's default for ivfpq)")
    ap.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64, 128], help="ivfpq sweep")
    ap.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128, 256], help="hnsw sweep")
    ap.add_argument("--single", type=int, default=200, help="one-at-a-time queries timed for latency")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import faiss
    from rich.console import Console
    from rich.table import Table

    from reidkit.retrieval.index import GalleryIndex

    faiss.omp_set_num_threads(args.threads)
    console = Console(width=170)
    kmax = max(args.k)
    t = time.perf_counter()
    gallery, gallery_ids, queries, query_ids = synthetic(args.n, args.dim, args.queries, args.seed)

    def rank1(ids: np.ndarray) -> str:  # ReID rank-1: is the top result of the query's identity
        return f"{np.mean(gallery_ids[ids[:, 0]] == query_ids):.3f}"
    console.print(f"data: {args.n:,} x {args.dim} gallery ({gallery.nbytes / 1e9:.2f} GB), {args.queries} queries, "
                  f"{args.n // 20:,} identities, generated in {time.perf_counter() - t:.1f} s; "
                  f"faiss {faiss.__version__}, {args.threads} threads")

    table = Table(title=f"search_speed: N={args.n:,}, D={args.dim}, Q={args.queries}, threads={args.threads}",
                  title_justify="left")
    for col in ("index", "setting", "build s", "size MB", *(f"recall@{k}" for k in args.k), "rank-1 id",
                "QPS (batch)", "p50 ms", "p99 ms", "speed-up vs flat"):
        table.add_column(col, justify="left" if col in ("index", "setting") else "right")

    t = time.perf_counter()
    flat = GalleryIndex.build(gallery, kind="flat")
    flat_build = time.perf_counter() - t
    exact = timed_search(flat, queries, kmax, args.single)
    row = ("flat (exact, peer)", "-", f"{flat_build:.1f}", f"{gallery.nbytes / 1e6:.0f}",
           *("1.000" for _ in args.k), rank1(exact["ids"]), f"{exact['qps']:.0f}", f"{exact['p50_ms']:.2f}",
           f"{exact['p99_ms']:.2f}", "1.0x")
    table.add_row(*row)
    console.print("  " + " | ".join(row), highlight=False)
    del flat
    console.print(f"flat done (peak RSS {peak_rss_gb():.1f} GB)")

    kinds = [k for k in args.kinds.split(",") if k]
    plain = None
    for kind in kinds:
        base, _, refine = kind.partition("+")
        t = time.perf_counter()
        if base == "ivfpq" and refine and plain is not None:
            gi = with_refinement(plain, gallery, refine)  # same trained IVF-PQ, plus re-scoring copies
            build_s = plain_build + time.perf_counter() - t
        else:
            gi = GalleryIndex.build(gallery, kind=base, params={"refine": refine or "none"} if base == "ivfpq" else None)
            build_s = time.perf_counter() - t
        if kind == "ivfpq":
            plain, plain_build = gi, build_s
        size_mb = index_bytes(gi) / 1e6
        sweep = args.nprobe if base == "ivfpq" else args.ef_search
        for value in sweep:
            if base == "ivfpq":
                ivf = faiss.extract_index_ivf(gi.faiss)
                ivf.nprobe = min(value, gi.params["nlist"])
                setting = f"nlist={gi.params['nlist']} PQ{gi.params['m']} nprobe={ivf.nprobe}"
            else:
                gi.faiss.hnsw.efSearch = value
                setting = f"M={gi.params['M']} efSearch={value}"
            r = timed_search(gi, queries, kmax, args.single)
            row = (kind, setting, f"{build_s:.1f}", f"{size_mb:.0f}",
                   *(f"{recall(r['ids'][:, :k], exact['ids'][:, :k]):.3f}" for k in args.k), rank1(r["ids"]),
                   f"{r['qps']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['qps'] / exact['qps']:.1f}x")
            table.add_row(*row)
            console.print("  " + " | ".join(row), highlight=False)  # kept if a long run is cut short
        console.print(f"{kind} done: {build_s:.1f} s build (peak RSS {peak_rss_gb():.1f} GB)")
        if gi is not plain:
            del gi
    console.print(table)
    console.print(f"peak RSS {peak_rss_gb():.1f} GB. Speed-up is batch QPS over exact flat search in this run.")


if __name__ == "__main__":
    main()
