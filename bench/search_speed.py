"""Gallery search at scale: recall@k of the approximate indexes against exact search, and latency.

    uv run python bench/search_speed.py --threads 1              # 1,000,000 x 384 (about 5 GB of RAM at peak)
    uv run python bench/search_speed.py --n 200000 --threads 1   # a quicker run
    uv run python bench/search_speed.py --kinds ivfpq,ivfpq:nlist=1000 --nprobe 200 400

The gallery is synthetic but shaped like ReID features: ``n / 20`` identities, each a random
direction plus per-image noise as large as that direction, so a query's true neighbours are the
~20 images of its identity (not uniform noise, on which every ANN index looks bad and no real
gallery looks like). Queries are fresh images of gallery identities. Exact inner-product search
(faiss IndexFlatIP, the ``flat`` kind) gives the ground truth and is the peer every approximate
index is compared with, in the same run: recall@k = |approx top-k ∩ exact top-k| / k, rank-1
identity accuracy, batch throughput, and single-query latency (median and 99th percentile over
``--single`` one-at-a-time queries).

Every index is built by reidkit's own code (``GalleryIndex.build``). Each kind is built once with
the defaults a user gets without flags (plus any ``kind:key=value`` build overrides); its
``default`` row uses the default search setting, the other rows sweep that search-time knob
(``nprobe`` for ivfpq, ``efSearch`` for hnsw) on the same index. ``auto`` marks the kind that
``--kind auto`` picks for this gallery size.
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


def index_bytes(gi) -> int:
    """Bytes of the faiss index as written to disk (flat: 4 D per vector, not serialised to save RAM)."""
    import faiss

    if gi.kind == "flat":
        return 4 * gi.dim * len(gi)
    return int(faiss.serialize_index(gi.faiss).nbytes)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def parse_kind(spec: str) -> tuple[str, dict]:
    """``ivfpq:nlist=1000:refine=none`` -> ("ivfpq", {"nlist": 1000, "refine": "none"})."""
    kind, *pairs = spec.split(":")
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--kinds: expected key=value after {kind}:, got {pair!r}")
        params[key] = {"true": True, "false": False}.get(value.lower(), value)
        for cast in (int, float):
            try:
                params[key] = cast(value)
                break
            except ValueError:
                pass
    return kind, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="gallery size")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--kinds", default="hnsw,ivfpq,ivfpq:refine=none",
                    help="approximate indexes compared with flat, comma-separated; kind:key=value overrides a build "
                         "default (e.g. ivfpq:fast_scan=false:nbits=8, reidkit's old IVF-PQ codes)")
    ap.add_argument("--nprobe", type=int, nargs="*", default=None,
                    help="ivfpq sweep (default: 10, 25, 45, 60%% of nlist, next to the default's 35%%)")
    ap.add_argument("--ef-search", type=int, nargs="*", default=[32, 64, 256], help="hnsw sweep (beside the default)")
    ap.add_argument("--single", type=int, default=200, help="one-at-a-time queries timed for latency")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import faiss
    from rich.console import Console
    from rich.table import Table

    from reidkit.retrieval.index import GalleryIndex, choose_kind

    faiss.omp_set_num_threads(args.threads)
    console = Console(width=180)
    kmax = max(args.k)
    t = time.perf_counter()
    gallery, gallery_ids, queries, query_ids = synthetic(args.n, args.dim, args.queries, args.seed)

    def rank1(ids: np.ndarray) -> str:  # ReID rank-1: is the top result of the query's identity
        return f"{np.mean(gallery_ids[ids[:, 0]] == query_ids):.3f}"
    auto = choose_kind(args.n)
    console.print(f"data: {args.n:,} x {args.dim} gallery ({gallery.nbytes / 1e9:.2f} GB), {args.queries} queries, "
                  f"{args.n // 20:,} identities, generated in {time.perf_counter() - t:.1f} s; "
                  f"faiss {faiss.__version__}, {args.threads} threads; --kind auto picks {auto}")

    table = Table(title=f"search_speed: N={args.n:,}, D={args.dim}, Q={args.queries}, k={kmax}, "
                        f"threads={args.threads}", title_justify="left")
    for col in ("index", "setting", "build s", "B/vector", *(f"recall@{k}" for k in args.k), "rank-1 id",
                "QPS (batch)", "p50 ms", "p99 ms", "p50 speed-up"):
        table.add_column(col, justify="left" if col in ("index", "setting") else "right")

    def add_row(name: str, setting: str, build_s: float, nbytes: int, r: dict, exact_p50: float,
                default: bool = False, last: bool = False) -> None:
        row = (name, setting, f"{build_s:.1f}", f"{nbytes / args.n:.0f}",
               *(f"{recall(r['ids'][:, :k], exact['ids'][:, :k]):.3f}" for k in args.k), rank1(r["ids"]),
               f"{r['qps']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{exact_p50 / r['p50_ms']:.0f}x")
        table.add_row(*row, style="bold" if default else None, end_section=last)
        console.print("  " + " | ".join(row), highlight=False)  # kept if a long run is cut short

    t = time.perf_counter()
    flat = GalleryIndex.build(gallery, kind="flat")
    flat_build = time.perf_counter() - t
    exact = timed_search(flat, queries, kmax, args.single)
    add_row("flat (exact, peer)" + (" auto" if auto == "flat" else ""), "-", flat_build, index_bytes(flat), exact,
            exact["p50_ms"], default=auto == "flat", last=True)
    del flat
    console.print(f"flat done (peak RSS {peak_rss_gb():.1f} GB)")

    for spec in [s for s in args.kinds.split(",") if s]:
        kind, overrides = parse_kind(spec)
        if kind not in ("hnsw", "ivfpq"):
            raise SystemExit(f"--kinds: {kind!r} is not an approximate kind (hnsw, ivfpq)")
        t = time.perf_counter()
        gi = GalleryIndex.build(gallery, kind=kind, params=overrides)
        build_s = time.perf_counter() - t
        nbytes = index_bytes(gi)
        built = {k: v for k, v in gi.params.items() if k not in ("nprobe", "efSearch", "k_factor")}
        is_default = not overrides
        name = spec + (" (auto)" if is_default and kind == auto else "")
        console.print(f"{spec}: built in {build_s:.1f} s, {nbytes / args.n:.0f} B/vector, "
                      + ", ".join(f"{k}={v}" for k, v in built.items()))
        if kind == "ivfpq":
            knob, default_value = "nprobe", gi.params["nprobe"]
            nlist = gi.params["nlist"]
            sweep = args.nprobe if args.nprobe is not None else [max(1, round(s * nlist)) for s in (0.1, 0.25, 0.45, 0.6)]
            values = sorted({min(v, nlist) for v in sweep} | {default_value})
            label = lambda v: f"nlist={nlist} nprobe={v} ({v / nlist:.0%})"  # noqa: E731
        else:
            knob, default_value = "efSearch", gi.params["efSearch"]
            values = sorted(set(args.ef_search) | {default_value})
            label = lambda v: f"M={gi.params['M']} efC={gi.params['efConstruction']} efSearch={v}"  # noqa: E731
        for value in values:
            gi.set_search_params(**{knob: value})
            r = timed_search(gi, queries, kmax, args.single)
            marked = is_default and value == default_value
            add_row(name, label(value) + ("  <- default" if marked else ""), build_s, nbytes, r, exact["p50_ms"],
                    default=marked, last=value == values[-1])
        console.print(f"{spec} done (peak RSS {peak_rss_gb():.1f} GB)")
        del gi
    console.print(table)
    console.print(f"peak RSS {peak_rss_gb():.1f} GB. Bold rows: what `reidkit index build` gives without flags "
                  f"(default search setting); p50 speed-up is exact flat's single-query median over the row's. "
                  f"B/vector: the faiss index file (the index folder adds the item metadata).")


if __name__ == "__main__":
    main()
