"""The gallery index: a faiss index over L2-normalised features plus the metadata of each image.

An index is a folder::

    INDEX/
      meta.json              kind, dim, count, roots, model, faiss parameters, current generation
      index-<gen>.faiss      the faiss index (faiss's own binary format, no pickle)
      items-<gen>.npz        pids (N,) i64, camids (N,) i64, root (N,) i32, relpaths (N,) str

Similarity is cosine: vectors are L2-normalised and searched by inner product, so a score is a
cosine in [-1, 1], higher is closer. Three kinds:

* ``flat``  exact search (faiss IndexFlatIP); right for ReID galleries up to ~1e5 images.
* ``hnsw``  graph search (IndexHNSWFlat, M=32); keeps full vectors plus the graph (~4.7 D bytes
  per image). Near-exact at 2e5 images, but its recall falls at 1e6 on ReID-like data.
* ``ivfpq`` inverted lists + 4-bit fast-scan product quantisation (IndexIVFPQFastScan), for
  hundreds of thousands to millions; 35 % of the lists are probed. By default the 4k PQ
  candidates are re-scored with 8-bit copies of the vectors (``refine='sq8'``: D/8 + D bytes per
  image, near-exact ranking); ``refine='none'`` keeps only the D/8-byte codes.

``auto`` picks by gallery size (:func:`choose_kind`): flat up to 100k, ivfpq above. The query-time
knobs (``nprobe``, ``k_factor``, ``efSearch``) are stored with the index and can be changed per
search (:meth:`GalleryIndex.set_search_params`).

Updates (``add``) write new generation files, then swap ``meta.json`` atomically, then delete
the old generation: a run killed at any moment leaves either the old index or the new one.
Image paths are stored relative to one of the index's *roots*; the web UI serves gallery images
only from inside those roots.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reidkit.utils.arrays import l2_normalise

FORMAT = "reidkit.index/1"
KINDS = ("flat", "hnsw", "ivfpq")
FLAT_MAX = 100_000      # auto: exact search up to this size, IVF-PQ above
NPROBE_SHARE = 0.35     # ivfpq: share of the inverted lists probed by default (see _ivfpq_params)
IVFPQ_MIN = 1_000       # fewer vectors cannot train the coarse quantiser and codebooks sensibly


class IndexFileError(ValueError):
    """An index folder that is missing, corrupt, inconsistent or used with the wrong dimension."""


def choose_kind(n: int) -> str:
    """The index kind ``auto`` picks for ``n`` gallery vectors."""
    # Not hnsw: on bench/search_speed.py's 1M gallery HNSW (M=32, efConstruction=40) took 9 minutes
    # to build on one core, 4x the memory, and reached recall@10 0.67 at efSearch=128 (0.77 at
    # 256), where IVF-PQ reaches 0.95 at about the same latency. hnsw stays available by flag.
    return "flat" if n <= FLAT_MAX else "ivfpq"


def normalise(x: np.ndarray) -> np.ndarray:
    """(N, D) float32 rows scaled to unit L2 norm (zero rows stay zero); rows already of unit length
    (within 1e-5) are not copied (1M x 384 = 1.5 GB)."""
    return l2_normalise(np.ascontiguousarray(np.asarray(x, dtype=np.float32)), unit_tol=1e-5)


@dataclass
class SearchResult:
    """Top-k per query: ``scores`` (Q, k) float32 cosine, descending; ``ids`` (Q, k) int64, -1 = none."""
    scores: np.ndarray
    ids: np.ndarray


@dataclass
class Items:
    """Per-image metadata, aligned with the faiss ids 0..N-1."""
    pids: np.ndarray            # (N,) int64, -1 unknown
    camids: np.ndarray          # (N,) int64, -1 unknown
    root: np.ndarray            # (N,) int32 index into ``GalleryIndex.roots``, -1 = no image file
    relpaths: list[str]         # (N,) posix path relative to its root ('' when no file)

    def __len__(self) -> int:
        return len(self.pids)

    def concat(self, other: "Items") -> "Items":
        return Items(np.concatenate([self.pids, other.pids]), np.concatenate([self.camids, other.camids]),
                     np.concatenate([self.root, other.root]), self.relpaths + other.relpaths)


# ----------------------------------------------------------------------------- building faiss indexes

def _ivfpq_params(n: int, d: int) -> dict:
    # Measured with bench/search_speed.py (one thread): on a ReID-like gallery an identity's images
    # land in many inverted lists, so recall against exact search is set by the share of lists
    # probed, and the share needed grows with N (at 1M, 2k lists: 25 % -> recall@10 0.93, 32 % ->
    # 0.95, 38 % -> 0.965). So: nlist = 2 sqrt(N) (4k lists needed as large a share of the gallery
    # and trained 3x longer), nprobe = 35 % of the lists, and 4-bit fast-scan PQ codes (d/4
    # sub-quantisers, D/8 bytes per vector), which scan 4-10x faster than 8-bit PQ codes of the same
    # size, so probing that much costs ~2 ms a query at 1M on one core. The PQ shortlist
    # (k_factor * k) is then re-scored with 8-bit copies of the vectors.
    nlist = int(max(1, min(2 * math.sqrt(n), n // 39, 16384)))
    m = next(c for c in (d // 4, d // 2, d, 1) if c >= 1 and d % c == 0)
    return {"nlist": nlist, "m": m, "nbits": 4, "fast_scan": True, "nprobe": _default_nprobe(nlist),
            "refine": "sq8", "k_factor": 4}


def _default_nprobe(nlist: int) -> int:
    """Inverted lists probed per query unless told otherwise: NPROBE_SHARE of them, at least one."""
    return max(1, math.ceil(NPROBE_SHARE * nlist))


def new_faiss_index(kind: str, x: np.ndarray, params: dict):
    """An empty (trained) faiss index of ``kind`` for normalised vectors ``x`` (N, D)."""
    import faiss

    d = x.shape[1]
    if kind == "flat":
        return faiss.IndexFlatIP(d)
    if kind == "hnsw":
        idx = faiss.IndexHNSWFlat(d, params["M"], faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction = params["efConstruction"]
        idx.hnsw.efSearch = params["efSearch"]
        return idx
    # refine: re-score the k_factor*k PQ candidates with 8-bit scalar-quantised ("sq8", D bytes
    # per vector) or exact ("flat", 4D bytes) copies of the vectors: near-exact ranking, more memory.
    refine = {"none": "", "sq8": ",Refine(SQ8)", "flat": ",RFlat"}.get(params.get("refine", "none"))
    if refine is None:
        raise IndexFileError(f"ivfpq refine must be none, sq8 or flat, got {params['refine']!r}")
    nlist, m, nbits = int(params["nlist"]), int(params["m"]), int(params["nbits"])
    fast_scan = bool(params.get("fast_scan", False))
    if fast_scan and nbits != 4:
        raise IndexFileError(f"ivfpq fast-scan codes are 4-bit, got nbits={nbits}; pass fast_scan=False for "
                             "other code sizes")
    if d % m:
        raise IndexFileError(f"ivfpq m={m} sub-quantisers must divide the dimension {d}")
    if not 1 <= nlist <= len(x):
        raise IndexFileError(f"ivfpq nlist={nlist} must lie in 1..{len(x)} (the number of vectors)")
    idx = faiss.index_factory(d, f"IVF{nlist},PQ{m}x{nbits}{'fs' if fast_scan else ''}{refine}",
                              faiss.METRIC_INNER_PRODUCT)
    if not fast_scan:
        # Polysemous training (codes ordered for Hamming filtering) is on by default and costs
        # minutes; we never search in polysemous mode, so skip it.
        faiss.downcast_index(faiss.extract_index_ivf(idx)).do_polysemous_training = False
    rng = np.random.default_rng(0)  # deterministic training sample
    n_train = min(len(x), max(50 * nlist, 64 * 2 ** nbits))
    sample = x if n_train >= len(x) else x[np.sort(rng.choice(len(x), n_train, replace=False))]
    idx.train(sample)
    apply_search_params(idx, "ivfpq", params)
    return idx


def default_params(kind: str, n: int, d: int) -> dict:
    if kind == "flat":
        return {}
    if kind == "hnsw":
        return {"M": 32, "efConstruction": 40, "efSearch": 128}
    return _ivfpq_params(n, d)


SEARCH_PARAMS = {"hnsw": ("efSearch",), "ivfpq": ("nprobe", "k_factor"), "flat": ()}


def apply_search_params(faiss_index, kind: str, params: dict) -> None:
    """Set the query-time knobs (efSearch / nprobe, k_factor) stored in the metadata on a loaded index."""
    if kind == "hnsw":
        faiss_index.hnsw.efSearch = int(params["efSearch"])
    elif kind == "ivfpq":
        import faiss

        ivf = faiss.extract_index_ivf(faiss_index)
        ivf.nprobe = int(min(params["nprobe"], ivf.nlist))
        if params.get("refine", "none") != "none":
            faiss_index.k_factor = float(params.get("k_factor", 4))


# ----------------------------------------------------------------------------- paths and roots

def check_root(root: str | Path, where: str = "") -> Path:
    """An image root the web UI may serve from: absolute, normalised, and not the filesystem root.

    The same rule holds when an index is built and when it is loaded: index folders are copied
    around, so a ``meta.json`` is as untrusted as a user's ``--root``.
    """
    text = str(root)
    path = Path(text)
    prefix = f"{where}: " if where else ""
    if not path.is_absolute() or os.path.normpath(text) != text.rstrip("/") and text != "/":
        raise IndexFileError(f"{prefix}image root {text!r} must be an absolute, normalised path")
    if len(path.parts) <= 1:
        raise IndexFileError(f"{prefix}image root {text!r} is the whole filesystem; the web UI serves "
                             "files under its roots, so pass a gallery folder (--root DIR)")
    return path


def check_relpath(rel: str, where: str) -> None:
    """A stored image path must stay under its root: relative, no '..', no NUL."""
    if rel and (os.path.isabs(rel) or "\x00" in rel or ".." in Path(rel).parts):
        raise IndexFileError(f"{where}: image path {rel!r} is not relative to its root")

def assign_roots(paths: list[str] | None, n: int, roots: list[Path]) -> tuple[list[Path], np.ndarray, list[str]]:
    """Place each image path under a root: ``(roots, root_idx (N,), relpaths)``.

    Relative paths are read against the first root (or the working directory when no root is
    given). Without explicit roots the deepest common folder of all images becomes the root; a
    root that would be the whole filesystem is refused, since the web UI serves files under it.
    """
    roots = [check_root(os.path.abspath(r)) for r in roots]
    if paths is None:
        return list(roots), np.full(n, -1, np.int32), [""] * n
    base = roots[0] if roots else Path.cwd()
    absolute = [os.path.normpath(p if os.path.isabs(p) else os.path.join(base, p)) for p in paths]
    if not roots:
        common = Path(os.path.commonpath([os.path.dirname(p) for p in absolute]))
        if len(common.parts) <= 1:
            raise IndexFileError(
                f"the images' only common folder is {common}; pass --root DIR (one or more) so the "
                "web UI does not serve files from the whole filesystem")
        roots = [common]
    root_idx = np.empty(n, np.int32)
    rel = []
    for i, p in enumerate(absolute):
        for j, r in enumerate(roots):
            if Path(p).is_relative_to(r):
                root_idx[i] = j
                rel.append(Path(p).relative_to(r).as_posix())
                break
        else:
            raise IndexFileError(f"image {paths[i]} lies outside every root {[str(r) for r in roots]}")
    return roots, root_idx, rel


# ----------------------------------------------------------------------------- the index

@dataclass
class GalleryIndex:
    """A loaded (or freshly built) gallery index. ``faiss`` holds the vectors, ``items`` the labels."""
    faiss: object
    kind: str
    dim: int
    items: Items
    roots: list[Path]
    params: dict = field(default_factory=dict)
    model: dict | None = None           # {"path", "sha256", "feat_dim"} when built from images
    folder: Path | None = None
    generation: int = 0

    def __len__(self) -> int:
        return int(self.faiss.ntotal)

    # -- construction
    @classmethod
    def build(cls, features: np.ndarray, pids=None, camids=None, paths: list[str] | None = None, *,
              kind: str = "auto", roots: list[str | Path] = (), params: dict | None = None,
              model: dict | None = None) -> "GalleryIndex":
        """Index (N, D) features (any scale; they are L2-normalised here)."""
        x = normalise(features)
        n, d = x.shape
        if n == 0:
            raise IndexFileError("cannot build an index from 0 features")
        if kind == "auto":
            kind = choose_kind(n)
        if kind not in KINDS:
            raise IndexFileError(f"unknown index kind {kind!r}; choose one of auto, {', '.join(KINDS)}")
        if kind == "ivfpq" and n < IVFPQ_MIN:
            raise IndexFileError(f"an ivfpq index needs at least {IVFPQ_MIN} vectors to train, got {n}; "
                                 "use --kind flat")
        p = default_params(kind, n, d)
        params = dict(params or {})
        unknown = sorted(set(params) - set(p))
        if unknown:
            raise IndexFileError(f"unknown {kind} index parameter(s) {unknown}; known: {sorted(p)}")
        if kind == "ivfpq" and "nlist" in params and "nprobe" not in params:
            params["nprobe"] = _default_nprobe(params["nlist"])
        p.update(params)
        fi = new_faiss_index(kind, x, p)
        fi.add(x)
        roots, root_idx, rel = assign_roots(paths, n, [Path(r) for r in roots])
        items = Items(_labels(pids, n, "pids"), _labels(camids, n, "camids"), root_idx, rel)
        return cls(fi, kind, d, items, roots, p, model)

    def add(self, features: np.ndarray, pids=None, camids=None, paths: list[str] | None = None,
            roots: list[str | Path] = (), source: str = "features") -> None:
        """Append vectors and their metadata (ids continue from ``len(self)``)."""
        x = normalise(features)
        if x.shape[1] != self.dim:
            raise IndexFileError(f"dimension mismatch: index {self.folder or ''} has dim {self.dim}, "
                                 f"{source} have dim {x.shape[1]}")
        n = len(x)
        new_pids, new_camids = _labels(pids, n, "pids"), _labels(camids, n, "camids")  # validate first
        new_roots = [check_root(os.path.abspath(r)) for r in roots]
        all_roots = list(self.roots) + [r for r in new_roots if r not in self.roots]
        if paths is not None and not new_roots:
            # Reuse existing roots when they contain the new images; else derive one for them.
            try:
                _, root_idx, rel = assign_roots(paths, n, self.roots)
            except IndexFileError:
                extra, _, _ = assign_roots(paths, n, [])
                all_roots += [r for r in extra if r not in all_roots]
                _, root_idx, rel = assign_roots(paths, n, all_roots)
        else:
            _, root_idx, rel = assign_roots(paths, n, all_roots)
        self.faiss.add(x)
        self.roots = all_roots
        self.items = self.items.concat(Items(new_pids, new_camids, root_idx, rel))

    # -- queries
    def set_search_params(self, **overrides) -> None:
        """Change query-time knobs (``nprobe``/``k_factor`` for ivfpq, ``efSearch`` for hnsw); ``None`` values
        are ignored. They apply to this loaded index; :meth:`save` would record them."""
        given = {k: v for k, v in overrides.items() if v is not None}
        allowed = SEARCH_PARAMS[self.kind]
        wrong = sorted(set(given) - set(allowed))
        if wrong:
            raise IndexFileError(f"{wrong} do not apply to a {self.kind} index"
                                 + (f" (its search parameters: {', '.join(allowed)})" if allowed else ""))
        for key, value in given.items():
            if not value > 0:
                raise IndexFileError(f"{key} must be positive, got {value}")
            if key == "k_factor" and self.params.get("refine", "none") == "none":
                raise IndexFileError("k_factor applies to an ivfpq index with refine sq8 or flat; "
                                     "this one keeps PQ codes only")
        self.params.update(given)
        apply_search_params(self.faiss, self.kind, self.params)

    def search(self, queries: np.ndarray, k: int = 20, source: str = "queries") -> SearchResult:
        """Top-k gallery ids and cosine scores for (Q, D) queries."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            got = q.shape[1] if q.ndim == 2 else q.shape
            raise IndexFileError(f"dimension mismatch: index {self.folder or ''} has dim {self.dim}, "
                                 f"{source} have dim {got}")
        if k < 1:
            raise IndexFileError(f"k must be >= 1, got {k}")
        k = min(k, len(self))
        qn = normalise(q)
        # faiss orders equal scores as its heap leaves them (a flat index: the *last* gallery id
        # first), and float32 sums round differently on each code path. Rank like the evaluation
        # does instead: score in float64, equal scores by gallery id. Candidates are fetched until
        # every one tied with the k-th is in, so a tie across the k boundary is resolved the same way.
        fetch = min(len(self), k + 8)
        while True:
            scores, ids = self.faiss.search(qn, fetch)
            if fetch >= len(self) or not _ties_cross(scores, ids, k):
                break
            fetch = min(len(self), 4 * fetch)
        scores, ids = self._exact_order(qn, scores, ids.astype(np.int64), k)
        return SearchResult(scores, ids)

    def _exact_order(self, qn: np.ndarray, scores: np.ndarray, ids: np.ndarray, k: int):
        """Top-k of the candidates by (float64 cosine descending, gallery id ascending)."""
        exact = self.kind in ("flat", "hnsw")  # full vectors stored: re-score exactly
        s64 = scores.astype(np.float64)
        if exact and ids.size:
            valid = ids >= 0
            vecs = self.vectors(np.where(valid, ids, 0).reshape(-1)).astype(np.float64)
            q64 = qn.astype(np.float64)
            s64 = np.einsum("qkd,qd->qk", vecs.reshape(*ids.shape, self.dim), q64)
            s64 = np.where(valid, s64, -np.inf)
        big = np.iinfo(np.int64).max
        order = np.lexsort((np.where(ids >= 0, ids, big), -s64), axis=1)[:, :k]
        ids = np.take_along_axis(ids, order, axis=1)
        s64 = np.take_along_axis(s64, order, axis=1)
        return np.where(ids >= 0, s64, -np.inf).astype(np.float32) if exact else \
            np.take_along_axis(scores, order, axis=1).astype(np.float32), ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), D) stored vectors (exact for flat/hnsw, PQ-decoded for ivfpq)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self)):
            raise IndexFileError(f"gallery id out of range 0..{len(self) - 1}")
        if self.kind == "ivfpq" and self.params.get("refine", "none") == "none":
            self.faiss.make_direct_map()  # no-op once built; ivf lists need it to reconstruct by id
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self.faiss.reconstruct_batch(ids).astype(np.float32)

    def path_of(self, i: int) -> Path | None:
        """Absolute image path of gallery item ``i`` (None when the index has no image paths)."""
        r = int(self.items.root[i])
        return None if r < 0 else self.roots[r] / self.items.relpaths[i]

    def info(self) -> dict:
        return {"folder": str(self.folder) if self.folder else None, "kind": self.kind, "dim": self.dim,
                "count": len(self), "identities": int(len(np.unique(self.items.pids[self.items.pids >= 0]))),
                "cameras": int(len(np.unique(self.items.camids[self.items.camids >= 0]))),
                "roots": [str(r) for r in self.roots], "params": dict(self.params), "model": self.model,
                "generation": self.generation}

    # -- persistence
    def save(self, folder: str | Path) -> Path:
        """Write a new generation, then switch ``meta.json`` to it atomically, then drop the old one."""
        import faiss
        from reidkit.utils.io import atomic_write, save_json

        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise IndexFileError(f"{folder}: exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        old = _read_meta(folder)["generation"] if (folder / "meta.json").is_file() else None
        gen = (old + 1) if old is not None else self.generation
        index_name, items_name = f"index-{gen}.faiss", f"items-{gen}.npz"
        atomic_write(folder / index_name, lambda tmp: faiss.write_index(self.faiss, tmp))

        def write_items(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, pids=self.items.pids, camids=self.items.camids, root=self.items.root,
                         relpaths=np.asarray(self.items.relpaths, dtype=np.str_))
        atomic_write(folder / items_name, write_items)
        meta = {"format": FORMAT, "kind": self.kind, "dim": self.dim, "count": len(self), "metric": "cosine",
                "generation": gen, "index_file": index_name, "items_file": items_name,
                "index_sha256": file_sha256(folder / index_name), "roots": [str(r) for r in self.roots],
                "params": self.params, "model": self.model}
        save_json(folder / "meta.json", meta)
        if old is not None and old != gen:
            for stale in (f"index-{old}.faiss", f"items-{old}.npz"):
                (folder / stale).unlink(missing_ok=True)
        self.folder, self.generation = folder, gen
        return folder

    @classmethod
    def load(cls, folder: str | Path, verify: bool = True) -> "GalleryIndex":
        """Open an index folder; every inconsistency is an :class:`IndexFileError` naming the file."""
        import faiss

        folder = Path(folder)
        meta = _read_meta(folder)
        index_path, items_path = folder / meta["index_file"], folder / meta["items_file"]
        for p in (index_path, items_path):
            if not p.is_file():
                raise IndexFileError(f"{p}: missing (meta.json refers to it); the index folder is incomplete")
        if verify and meta.get("index_sha256") and file_sha256(index_path) != meta["index_sha256"]:
            raise IndexFileError(f"{index_path}: checksum differs from meta.json; the file is corrupt or was replaced")
        try:
            fi = faiss.read_index(str(index_path))
        except Exception as e:
            raise IndexFileError(f"{index_path}: not a readable faiss index ({str(e).strip().splitlines()[-1]})") from None
        if fi.d != meta["dim"] or fi.ntotal != meta["count"]:
            raise IndexFileError(f"{index_path}: holds {fi.ntotal} vectors of dim {fi.d}, meta.json says "
                                 f"{meta['count']} of dim {meta['dim']}")
        try:
            with np.load(items_path, allow_pickle=False) as z:
                items = Items(z["pids"].astype(np.int64), z["camids"].astype(np.int64), z["root"].astype(np.int32),
                              [str(p) for p in z["relpaths"]])
        except Exception as e:
            raise IndexFileError(f"{items_path}: cannot read item metadata ({type(e).__name__}: {e})") from None
        lengths = {len(items.pids), len(items.camids), len(items.root), len(items.relpaths)}
        if lengths != {fi.ntotal}:
            raise IndexFileError(f"{items_path}: metadata lengths {sorted(lengths)} do not match the "
                                 f"{fi.ntotal} vectors of {index_path.name}")
        meta_path = folder / "meta.json"
        if not isinstance(meta["roots"], list) or not all(isinstance(r, str) for r in meta["roots"]):
            raise IndexFileError(f"{meta_path}: roots must be a list of folder paths")
        roots = [check_root(r, str(meta_path)) for r in meta["roots"]]
        for rel in items.relpaths:
            check_relpath(rel, str(items_path))
        if len(items) and items.root.max() >= len(roots):
            raise IndexFileError(f"{items_path}: refers to root #{items.root.max()}, meta.json lists {len(roots)}")
        apply_search_params(fi, meta["kind"], meta["params"])
        return cls(fi, meta["kind"], meta["dim"], items, roots, meta["params"], meta.get("model"), folder,
                   meta["generation"])


def _ties_cross(scores: np.ndarray, ids: np.ndarray, k: int) -> bool:
    """True when some row's last fetched candidate still scores as high as its k-th (more tied
    candidates may lie beyond what was fetched)."""
    if scores.shape[1] <= k:
        return False
    last_valid = ids[:, -1] >= 0
    return bool((last_valid & (scores[:, -1] >= scores[:, k - 1])).any())


def _labels(values, n: int, name: str) -> np.ndarray:
    if values is None:
        return np.full(n, -1, np.int64)
    arr = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(arr) != n:
        raise IndexFileError(f"{name}: {len(arr)} values for {n} features")
    return arr


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks (index files and model files are large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _read_meta(folder: Path) -> dict:
    path = folder / "meta.json"
    if not folder.is_dir():
        raise IndexFileError(f"{folder}: index folder not found")
    if not path.is_file():
        raise IndexFileError(f"{path}: missing; {folder} is not a reidkit index (build one with `reidkit index build`)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexFileError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise IndexFileError(f"{path}: format {meta.get('format') if isinstance(meta, dict) else None!r}, "
                             f"expected {FORMAT!r}")
    missing = [k for k in ("kind", "dim", "count", "generation", "index_file", "items_file", "roots", "params")
               if k not in meta]
    if missing:
        raise IndexFileError(f"{path}: missing field(s) {missing}")
    if meta["kind"] not in KINDS:
        raise IndexFileError(f"{path}: unknown index kind {meta['kind']!r}")
    for key in ("index_file", "items_file"):  # a crafted meta.json must not point outside the folder
        if Path(meta[key]).name != meta[key]:
            raise IndexFileError(f"{path}: {key} must be a plain file name, got {meta[key]!r}")
    return meta


def load_index(folder: str | Path) -> GalleryIndex:
    return GalleryIndex.load(folder)
