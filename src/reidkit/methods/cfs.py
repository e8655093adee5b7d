"""Catastrophic Forgetting Score (CFS): rank an unlabelled pool by relevance to a ReID target.

TransReID-SSL (§1) keeps the pre-training images whose representation barely changes when the
model is fine-tuned on the labelled target: with a *source proxy* θ_s (a short DINO run on the
pool) and a *target proxy* θ_t (θ_s fine-tuned on the target),

    CFS(x) = cos(f_s(x), f_t(x))      f = pre-BN global (CLS) feature, eval mode, test transform

and the pool sorted by CFS, descending, is cut to its head (``keep_num`` / ``keep_ratio``).
The official project released only the ranked list; this module computes it:

* ``score(source, target, images, out)``: sharded and resumable. Shards of ``shard_size`` images
  are written atomically under ``<out>.shards/``; a restart skips finished shards; under
  ``torchrun`` rank r scores shards r, r + world, ... and rank 0 merges. Output: one
  ``path<TAB>score`` line per image, best first (a valid ordered list for ``pretrain`` itself).
* ``select(scores, out, keep_ratio | keep_num, random=False, seed)``: the ordered subset list that
  ``pretrain`` reads (``data.list_file``), or a random subset of the same size for ablations.
The whole workflow (source proxy -> target proxy -> scores -> selection) is ``reidkit.workflows.cfs``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from reidkit.utils.io import atomic_write, atomic_write_text, save_json
from reidkit.utils.progress import make_progress


class CFSError(ValueError):
    """A scoring or selection input that cannot be used (names the file and the problem)."""


# ----------------------------------------------------------------------------------------------
# Inputs: models and images
# ----------------------------------------------------------------------------------------------
def as_model(model: nn.Module | str | os.PathLike) -> nn.Module:
    """A reidkit model, or a model file (``save_model`` output) loaded from disk."""
    if isinstance(model, nn.Module):
        return model
    from reidkit.models import load_model

    path = Path(model)
    if not path.is_file():
        raise CFSError(f"{path}: model file not found")
    return load_model(path)


def resolve_images(images: str | os.PathLike | Sequence[str], root: str | os.PathLike | None = None
                   ) -> tuple[str, list[str]]:
    """``(root, names)``: names relative to root (or absolute), in a fixed order.

    ``images`` is a folder (scanned recursively, sorted), an ordered list file (entries relative
    to ``root``, default the list's folder), or a sequence of paths.
    """
    from reidkit.data.datasets.unlabelled import read_file_list, scan_images

    if not isinstance(images, (str, os.PathLike)):
        names = [os.fspath(p) for p in images]
        return os.fspath(root) if root else "", names
    path = Path(images)
    if path.is_dir():
        base = Path(root) if root else path
        return str(base), [os.path.relpath(p, base) for p in scan_images(path)]
    if path.is_file():
        return str(Path(root) if root else path.parent), read_file_list(path)
    raise CFSError(f"{path}: no such image folder or file list")


class _ScoreImages(Dataset):
    """``(views..., ok)``: one tensor per distinct test transform; a corrupt image gives zeros and ok=False."""

    def __init__(self, paths: Sequence[str], transforms: list):
        self.paths, self.transforms = list(paths), transforms

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from reidkit.data.images import ImageError, load_rgb

        try:
            img = load_rgb(self.paths[i])
        except ImageError:
            return tuple(torch.zeros(3, *t.size) for t in self.transforms) + (False,)
        return tuple(t.fn(img) for t in self.transforms) + (True,)


@dataclass
class _Transform:
    size: tuple[int, int]
    fn: object


def _test_transforms(models: list[nn.Module]) -> tuple[list[_Transform], list[int]]:
    """The recipe's test transform at each model's input size; models of equal size share one."""
    from reidkit.data.transforms import build_test_transform

    sizes: list[tuple[int, int]] = []
    which = []
    for m in models:
        spec = getattr(m, "spec", None)
        size = tuple(spec.img_size) if spec is not None else (256, 128)
        if size not in sizes:
            sizes.append(size)
        which.append(sizes.index(size))
    return [_Transform(s, build_test_transform(s)) for s in sizes], which


@torch.no_grad()
def pre_bn_feature(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, D): the pooled feature before the BNNeck (the CLS token for CLS ViTs)."""
    if hasattr(model, "global_feature"):
        return model.global_feature(x)
    return model(x)


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------
def _fingerprint(names: Sequence[str], shard_size: int, *models: nn.Module) -> str:
    """Identifies a scoring job: the image list, the shard size and the two models' weights."""
    h = hashlib.sha256()
    h.update(str(shard_size).encode())
    for n in names:
        h.update(n.encode("utf-8", "surrogateescape") + b"\0")
    for m in models:
        for k, v in m.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().float().flatten()[:64].cpu().numpy().tobytes())
            h.update(str(float(v.detach().float().sum())).encode())
    return h.hexdigest()[:16]


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def score(source: nn.Module | str | os.PathLike, target: nn.Module | str | os.PathLike,
          images: str | os.PathLike | Sequence[str], out: str | os.PathLike, *, root: str | None = None,
          batch_size: int = 128, num_workers: int = 2, device: str = "auto", shard_size: int = 8192,
          precision: str = "fp32", progress: bool = True) -> Path:
    """Score every image by the cosine of the two models' pre-BN features; write ``out`` sorted.

    ``out`` gets ``path<TAB>score`` lines (score = cosine in [-1, 1]) in descending order, after a
    ``#`` header. Unreadable images are left out and listed in ``<out>.skipped.txt``. Per-shard
    scores live in ``<out>.shards/`` until the merge; a rerun resumes from them.
    """
    out = Path(out)
    base, names = resolve_images(images, root)
    if not names:
        raise CFSError(f"{images}: no images to score")
    if shard_size < 1:
        raise CFSError(f"shard_size must be >= 1, got {shard_size}")
    rank, world = _dist()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device, int(os.environ.get("LOCAL_RANK", 0))) if device == "cuda" else torch.device(device)
    models = [as_model(source).to(dev).eval(), as_model(target).to(dev).eval()]
    transforms, which = _test_transforms(models)
    paths = [os.path.join(base, n) for n in names]

    shard_dir = Path(str(out) + ".shards")
    shard_dir.mkdir(parents=True, exist_ok=True)
    fp = _fingerprint(names, shard_size, *models)
    manifest = shard_dir / "manifest.json"
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        if old.get("fingerprint") != fp:
            raise CFSError(f"{shard_dir} holds shards of another scoring job (other images, shard size or "
                           "models); delete it or choose another --out")
    elif rank == 0:
        save_json(manifest, {"fingerprint": fp, "images": len(names), "shard_size": shard_size})
    n_shards = math.ceil(len(names) / shard_size)
    mine = [k for k in range(n_shards) if k % world == rank and not (shard_dir / f"shard_{k:06d}.npy").is_file()]

    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    t0, done_images = time.perf_counter(), 0
    with make_progress(transient=False) as bar:
        task = bar.add_task("CFS scoring", total=sum(min(shard_size, len(names) - k * shard_size) for k in mine),
                            visible=progress)
        for k in mine:
            lo, hi = k * shard_size, min((k + 1) * shard_size, len(names))
            loader = DataLoader(_ScoreImages(paths[lo:hi], transforms), batch_size=batch_size,
                                num_workers=num_workers, pin_memory=dev.type == "cuda")
            scores = []
            for batch in loader:
                views, ok = batch[:-1], batch[-1]
                with torch.autocast(dev.type, dtype=autocast, enabled=autocast is not None):
                    f_s = pre_bn_feature(models[0], views[which[0]].to(dev, non_blocking=True))
                    f_t = pre_bn_feature(models[1], views[which[1]].to(dev, non_blocking=True))
                cos = torch.nn.functional.cosine_similarity(f_s.float(), f_t.float(), dim=1).cpu()
                cos[~ok.bool()] = float("nan")
                scores.append(cos)
                bar.advance(task, len(ok))
                done_images += len(ok)
            arr = torch.cat(scores).numpy().astype(np.float32)
            atomic_write(shard_dir / f"shard_{k:06d}.npy", lambda tmp, a=arr: _save_npy(tmp, a))
    if world > 1:
        dist.barrier()
    if rank == 0:
        _merge(shard_dir, n_shards, names, out)
    if world > 1:
        dist.barrier()
    return out


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a bare name
        np.save(f, array)


def _merge(shard_dir: Path, n_shards: int, names: list[str], out: Path) -> None:
    parts = []
    for k in range(n_shards):
        f = shard_dir / f"shard_{k:06d}.npy"
        if not f.is_file():
            raise CFSError(f"{f}: shard missing at merge time; run the scoring again to finish it")
        parts.append(np.load(f, allow_pickle=False))
    scores = np.concatenate(parts)
    if len(scores) != len(names):
        raise CFSError(f"{shard_dir}: shards hold {len(scores)} scores for {len(names)} images")
    bad = np.isnan(scores)
    order = np.argsort(-np.where(bad, -np.inf, scores), kind="stable")  # descending, ties keep input order
    order = order[~bad[order]]
    lines = [f"# CFS: cosine of source and target proxy pre-BN features; {len(order)} images, best first\n"]
    lines += [f"{names[i]}\t{scores[i]:.6f}\n" for i in order]
    atomic_write_text(out, "".join(lines))
    skipped = out.with_name(out.name + ".skipped.txt")
    if bad.any():
        atomic_write_text(skipped, "".join(names[i] + "\n" for i in np.flatnonzero(bad)))
    elif skipped.exists():
        skipped.unlink()


def read_scores(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """``(names, scores)`` from a scores file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise CFSError(f"{path}: scores file not found")
    names, scores = [], []
    for ln, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, value = line.rpartition("\t")
        try:
            if not sep:
                raise ValueError
            scores.append(float(value))
        except ValueError:
            raise CFSError(f"{path}:{ln}: expected 'path<TAB>score', got {line[:80]!r}") from None
        names.append(name)
    if not names:
        raise CFSError(f"{path}: no scores in the file")
    return names, np.asarray(scores, dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Selection
# ----------------------------------------------------------------------------------------------
def keep_count(n: int, keep_ratio: float | None = None, keep_num: int | None = None) -> int:
    """How many images to keep: ``keep_num``, or ``round(keep_ratio * n)`` (halves up, as the
    official 50% / 60% LUPerson counts 2,090,122 / 2,508,146 of 4,180,243)."""
    if (keep_ratio is None) == (keep_num is None):
        raise CFSError("give exactly one of keep_ratio and keep_num")
    if keep_ratio is not None:
        if not 0 < keep_ratio <= 1:
            raise CFSError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
        return max(1, math.floor(keep_ratio * n + 0.5))
    if keep_num < 1:
        raise CFSError(f"keep_num must be >= 1, got {keep_num}")
    return min(keep_num, n)


def select(scores: str | os.PathLike, out: str | os.PathLike, *, keep_ratio: float | None = None,
           keep_num: int | None = None, random: bool = False, seed: int = 0) -> list[str]:
    """Write the subset list ``pretrain`` reads (``data.list_file``); returns the kept names.

    CFS: the ``k`` highest-scoring images, best first. ``random=True``: ``k`` images drawn uniformly
    (seeded), the same size, for the "CFS vs random" ablation.
    """
    names, values = read_scores(scores)
    k = keep_count(len(names), keep_ratio, keep_num)
    if random:
        idx = np.random.default_rng(seed).permutation(len(names))[:k]
        how = f"random {k} of {len(names)} (seed {seed})"
    else:
        idx = np.argsort(-values, kind="stable")[:k]  # the file is sorted already; be robust to edits
        how = f"CFS top {k} of {len(names)}"
    kept = [names[i] for i in idx]
    atomic_write_text(out, f"# {how} from {scores}\n" + "".join(n + "\n" for n in kept))
    return kept
