"""Plan and write the synthetic benchmark: Market-1501 folders per domain, plus the pool.

Output layout (``OUT``)::

    city_a/bounding_box_train/0002_c1s3_000137_01.jpg   one Market-1501 folder per domain
    city_a/query/...            city_a/bounding_box_test/...   (pid 0000 distractors, -1 junk)
    city_b/...
    pool/000000.jpg ...         unlabelled pre-training pool (persons mixed with clutter)
    pool_relevance.csv          path,relevant,kind,domain  (path relative to OUT; evaluation only)
    synth.json                  resolved config and statistics, written last (marks completion)

Planning is cheap and sequential; rendering is per image and seeded per image, so the bytes
of a file depend only on the config and never on the number of workers or the order of work.
"""
from __future__ import annotations

import csv
import io
import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from reidkit.data.synth.clutter import CLUTTER_KINDS, render_clutter
from reidkit.data.synth.config import SynthConfig
from reidkit.data.synth.identity import Identity, sample_identity
from reidkit.data.synth.render import encode_jpeg, render_crop
from reidkit.data.synth.styles import DOMAIN_STYLES, Camera, make_camera

SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
POOL_DIR = "pool"
RELEVANCE_CSV = "pool_relevance.csv"
META_JSON = "synth.json"
POOL_CAMERAS_PER_DOMAIN = 4


class SynthError(ValueError):
    """The output folder cannot be written as asked (names the path and the problem)."""


@dataclass(frozen=True)
class ImageJob:
    relpath: str                  # relative to OUT
    kind: str                     # "person", "junk", or a clutter kind
    domain: int                   # index into DOMAIN_STYLES
    camera: Camera
    ident: Identity | None
    seed: int


@dataclass
class SynthResult:
    root: Path
    domains: list[Path]
    pool: Path | None
    relevance_csv: Path | None
    stats: dict = field(default_factory=dict)
    num_images: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.num_images / max(self.seconds, 1e-9)


def domain_names(cfg: SynthConfig) -> list[str]:
    return [s.name for s in DOMAIN_STYLES[:cfg.domains]]


def _market_name(pid: int, cam: int, seq: int, frame: int, idx: int) -> str:
    head = "-1" if pid < 0 else f"{pid:04d}"
    return f"{head}_c{cam + 1}s{seq}_{frame:06d}_{idx:02d}.jpg"


def plan_domain(cfg: SynthConfig, di: int) -> tuple[list[ImageJob], dict]:
    """All image jobs of domain ``di`` and its statistics (ids / images / cameras per split)."""
    style = DOMAIN_STYLES[di]
    rng = np.random.default_rng([cfg.seed, 1, di])
    cameras = [make_camera(style, c, rng) for c in range(cfg.cameras)]
    pids = rng.permutation(np.arange(1, cfg.train_ids + cfg.test_ids + 1))
    train_pids = sorted(int(p) for p in pids[:cfg.train_ids])
    test_pids = sorted(int(p) for p in pids[cfg.train_ids:])
    test_set = set(test_pids)
    jobs: list[ImageJob] = []
    frame = 0

    def add(split: str, pid: int, cam: int, seq: int, ident: Identity, kind: str = "person") -> None:
        nonlocal frame
        frame += 1
        name = _market_name(pid, cam, seq, 25 * frame + int(rng.integers(25)), 1 + frame % 4)
        seed = int(np.random.SeedSequence([cfg.seed, 2, di, frame]).generate_state(1)[0])
        jobs.append(ImageJob(f"{style.name}/{SPLIT_DIRS[split]}/{name}", kind, di, cameras[cam], ident, seed))

    for pid in train_pids + test_pids:
        ident = sample_identity(style, np.random.default_rng([cfg.seed, 3, di, pid]))
        r = np.random.default_rng([cfg.seed, 4, di, pid])
        k = int(r.integers(cfg.min_cameras_per_id, cfg.cameras + 1))
        cams = sorted(int(c) for c in r.choice(cfg.cameras, k, replace=False))
        counts = {c: 1 + int(r.poisson(cfg.images_per_camera - 1.0)) for c in cams}
        seqs = {c: int(r.integers(1, 7)) for c in cams}
        if pid not in test_set:
            for c in cams:
                for _ in range(counts[c]):
                    add("train", pid, c, seqs[c], ident)
            continue
        qcams = {int(c) for c in r.choice(cams, min(cfg.queries_per_id, k), replace=False)}
        for c in cams:
            n = max(counts[c], 2) if c in qcams else counts[c]  # a query camera keeps a gallery image
            for j in range(n):
                add("query" if (c in qcams and j == 0) else "gallery", pid, c, seqs[c], ident)
    for i in range(cfg.distractors):  # people who are never queried
        r = np.random.default_rng([cfg.seed, 5, di, i])
        add("gallery", 0, int(r.integers(cfg.cameras)), int(r.integers(1, 7)), sample_identity(style, r))
    for i in range(cfg.junk):  # bad detection boxes, ignored by the protocol
        r = np.random.default_rng([cfg.seed, 6, di, i])
        add("gallery", -1, int(r.integers(cfg.cameras)), int(r.integers(1, 7)), sample_identity(style, r), "junk")
    return jobs, _domain_stats(jobs)


def _domain_stats(jobs: list[ImageJob]) -> dict:
    stats = {}
    for split, folder in SPLIT_DIRS.items():
        names = [Path(j.relpath).name for j in jobs if f"/{folder}/" in j.relpath]
        pids = [int(n.split("_")[0]) for n in names]
        cams = {n.split("_")[1][:2] for n in names}
        stats[split] = {"ids": len({p for p in pids if p > 0}), "images": len(names), "cameras": len(cams),
                        "distractors": sum(p == 0 for p in pids), "junk": sum(p < 0 for p in pids)}
    return stats


def plan_pool(cfg: SynthConfig) -> tuple[list[ImageJob], list[dict]]:
    """Pool jobs and relevance rows: persons from the domains' styles mixed with clutter."""
    if cfg.pool_size == 0:
        return [], []
    rng = np.random.default_rng([cfg.seed, 7])
    cams = {di: [make_camera(DOMAIN_STYLES[di], c, rng) for c in range(POOL_CAMERAS_PER_DOMAIN)]
            for di in range(cfg.domains)}
    n_rel = int(round(cfg.pool_size * cfg.pool_relevant_ratio))
    relevant = np.zeros(cfg.pool_size, bool)
    relevant[rng.permutation(cfg.pool_size)[:n_rel]] = True
    jobs, rows = [], []
    for i in range(cfg.pool_size):
        r = np.random.default_rng([cfg.seed, 8, i])
        di = int(r.integers(cfg.domains))
        cam = cams[di][int(r.integers(POOL_CAMERAS_PER_DOMAIN))]
        seed = int(r.integers(2**63))
        rel = f"{POOL_DIR}/{i:06d}.jpg"
        if relevant[i]:
            jobs.append(ImageJob(rel, "person", di, cam, sample_identity(DOMAIN_STYLES[di], r), seed))
            rows.append({"path": rel, "relevant": 1, "kind": "person", "domain": DOMAIN_STYLES[di].name})
        else:
            kind = CLUTTER_KINDS[int(r.integers(len(CLUTTER_KINDS)))]
            jobs.append(ImageJob(rel, kind, di, cam, None, seed))
            rows.append({"path": rel, "relevant": 0, "kind": kind,
                         "domain": "" if kind == "offstyle" else DOMAIN_STYLES[di].name})
    return jobs, rows


def render_job(job: ImageJob, size: tuple[int, int], quality: int) -> bytes:
    """The JPEG bytes of one planned image (pure function of the job)."""
    rng = np.random.default_rng(job.seed)
    if job.kind in ("person", "junk"):
        assert job.ident is not None
        other = sample_identity(DOMAIN_STYLES[job.domain], rng)
        img = render_crop(job.ident, job.camera, rng, size, other=other, junk=job.kind == "junk")
    else:
        img = render_clutter(job.kind, job.camera, rng, size)
    return encode_jpeg(img, quality)


def _write_chunk(args: tuple[str, list[ImageJob], tuple[int, int], int]) -> int:
    root, jobs, size, quality = args
    for job in jobs:
        (Path(root) / job.relpath).write_bytes(render_job(job, size, quality))
    return len(jobs)


def run_chunks(write: Callable[[Any], int], chunks: list, workers: int, label: str, total: int,
               progress: bool) -> None:
    """``write(chunk)`` for every chunk (in ``workers`` processes when > 1), advancing a progress bar by
    what each returns. The files depend on the chunks only, never on the workers."""
    from reidkit.utils.progress import make_progress

    with make_progress() as bar:
        task = bar.add_task(label, total=total, visible=progress)
        if workers > 1:
            with ProcessPoolExecutor(workers) as ex:
                for n in ex.map(write, chunks):
                    bar.advance(task, n)
        else:
            for c in chunks:
                bar.advance(task, write(c))


def _prepare_out(root: Path, cfg: SynthConfig, overwrite: bool) -> None:
    ours = [root / n for n in [*(s.name for s in DOMAIN_STYLES), POOL_DIR, RELEVANCE_CSV, META_JSON]]
    if root.exists() and not root.is_dir():
        raise SynthError(f"{root}: output path exists and is not a folder")
    existing = [p for p in ours if p.exists()]
    if existing and not overwrite:
        raise SynthError(f"{root}: already holds a synthetic benchmark ({existing[0].name}); "
                         "pass overwrite=True (--overwrite) to replace it")
    for p in existing:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    for name in domain_names(cfg):
        for folder in SPLIT_DIRS.values():
            (root / name / folder).mkdir(parents=True, exist_ok=True)
    if cfg.pool_size:
        (root / POOL_DIR).mkdir(parents=True, exist_ok=True)


def generate(cfg: SynthConfig, out: str | Path, overwrite: bool = False, progress: bool = True) -> SynthResult:
    """Write the benchmark described by ``cfg`` under ``out``; returns paths and statistics."""
    from reidkit.utils.io import atomic_write_text, save_json

    cfg.validate()
    root = Path(out)
    _prepare_out(root, cfg, overwrite)
    t0 = time.perf_counter()
    jobs: list[ImageJob] = []
    stats: dict = {}
    for di, name in enumerate(domain_names(cfg)):
        djobs, stats[name] = plan_domain(cfg, di)
        jobs += djobs
    pool_jobs, rows = plan_pool(cfg)
    jobs += pool_jobs
    if rows:
        stats["pool"] = {"images": len(rows), "relevant": sum(r["relevant"] for r in rows),
                         **{k: sum(r["kind"] == k for r in rows) for k in ("person", *CLUTTER_KINDS)}}

    size = (cfg.height, cfg.width)
    chunk = 64
    chunks = [(str(root), jobs[i:i + chunk], size, cfg.jpeg_quality) for i in range(0, len(jobs), chunk)]
    run_chunks(_write_chunk, chunks, cfg.workers, "synth", len(jobs), progress)
    seconds = time.perf_counter() - t0

    relevance = None
    if rows:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["path", "relevant", "kind", "domain"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        relevance = atomic_write_text(root / RELEVANCE_CSV, buf.getvalue())
    config = {k: v for k, v in asdict(cfg).items() if k != "workers"}  # files never depend on workers
    save_json(root / META_JSON, {"format": "reidkit.synth/1", "config": config, "stats": stats})
    return SynthResult(root=root, domains=[root / n for n in domain_names(cfg)],
                       pool=root / POOL_DIR if rows else None, relevance_csv=relevance,
                       stats=stats, num_images=len(jobs), seconds=seconds)


def read_pool_relevance(path: str | Path) -> dict[str, bool]:
    """``{absolute image path: relevant}`` from ``pool_relevance.csv`` (or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / RELEVANCE_CSV
    if not path.is_file():
        raise SynthError(f"{path}: relevance file not found")
    out = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"path", "relevant"} <= set(reader.fieldnames):
            raise SynthError(f"{path}: expected columns path,relevant; found {reader.fieldnames}")
        for row in reader:
            out[str((path.parent / row["path"]).resolve())] = row["relevant"] == "1"
    return out
