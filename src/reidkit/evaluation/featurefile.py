"""The feature file: the contract between feature extraction and everything after it.

A feature file holds one split's embeddings and labels:
  * ``features`` (N, D) float32
  * ``pids``     (N,)   int64   (-1 where unknown)
  * ``camids``   (N,)   int64   (-1 where unknown)
  * ``paths``    optional list of N strings (image paths)

Stored as ``.safetensors`` (paths and ``meta`` as JSON in the metadata) or ``.npz`` (paths as a
string array, ``meta`` as a JSON string; loaded without pickle). ``reidkit eval``, re-ranking and the gallery index read it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class FeatureFileError(ValueError):
    """A feature file that is missing, malformed or inconsistent (names the file and the problem)."""


@dataclass
class FeatureSet:
    features: np.ndarray
    pids: np.ndarray
    camids: np.ndarray
    paths: list[str] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = np.ascontiguousarray(np.asarray(self.features, dtype=np.float32))
        self.pids = np.asarray(self.pids, dtype=np.int64).reshape(-1)
        self.camids = np.asarray(self.camids, dtype=np.int64).reshape(-1)
        if self.features.ndim != 2:
            raise FeatureFileError(f"features must be (N, D), got shape {self.features.shape}")
        n = len(self.features)
        if len(self.pids) != n or len(self.camids) != n:
            raise FeatureFileError(
                f"length mismatch: {n} features, {len(self.pids)} pids, {len(self.camids)} camids")
        if self.paths is not None and len(self.paths) != n:
            raise FeatureFileError(f"length mismatch: {n} features, {len(self.paths)} paths")

    def __len__(self) -> int:
        return len(self.features)

    def save(self, path: str | Path) -> Path:
        return save_features(self, path)


def save_features(fs: FeatureSet, path: str | Path) -> Path:
    """Write atomically; the format follows the suffix (``.safetensors`` or ``.npz``)."""
    from reidkit.utils.io import atomic_write, save_tensors
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        meta = {"format": "reidkit.features/1", "meta": json.dumps(fs.meta)}
        if fs.paths is not None:
            meta["paths"] = json.dumps(list(fs.paths))
        return save_tensors(path, {"features": torch.from_numpy(fs.features),
                                   "pids": torch.from_numpy(fs.pids),
                                   "camids": torch.from_numpy(fs.camids)}, metadata=meta)
    if path.suffix == ".npz":
        arrays = {"features": fs.features, "pids": fs.pids, "camids": fs.camids}
        if fs.paths is not None:
            arrays["paths"] = np.asarray(fs.paths, dtype=np.str_)
        if fs.meta:
            arrays["meta"] = np.asarray(json.dumps(fs.meta), dtype=np.str_)
        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        return atomic_write(path, write)
    raise FeatureFileError(f"{path}: unknown feature file suffix {path.suffix!r}; use .safetensors or .npz")


def load_features(path: str | Path) -> FeatureSet:
    """Read a feature file and check its contents; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"{path}: feature file not found")
    try:
        if path.suffix == ".safetensors":
            from reidkit.utils.io import load_tensors
            tensors, meta = load_tensors(path)
            arrays = {k: v.numpy() for k, v in tensors.items()}
            paths = json.loads(meta["paths"]) if "paths" in meta else None
            extra = json.loads(meta.get("meta", "{}"))
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            paths = [str(p) for p in arrays.pop("paths")] if "paths" in arrays else None
            extra = json.loads(str(arrays.pop("meta"))) if "meta" in arrays else {}
        else:
            raise FeatureFileError(f"{path}: unknown feature file suffix {path.suffix!r}; use .safetensors or .npz")
    except FeatureFileError:
        raise
    except Exception as e:  # corrupt or foreign file
        raise FeatureFileError(f"{path}: cannot read feature file ({type(e).__name__}: {e})") from None
    missing = [k for k in ("features", "pids", "camids") if k not in arrays]
    if missing:
        raise FeatureFileError(f"{path}: missing array(s) {missing}; found {sorted(arrays)}")
    feats = arrays["features"]
    if not np.issubdtype(feats.dtype, np.floating):
        raise FeatureFileError(f"{path}: features must be floating point, got {feats.dtype}")
    try:
        fs = FeatureSet(feats, arrays["pids"], arrays["camids"], paths, extra)
    except FeatureFileError as e:
        raise FeatureFileError(f"{path}: {e}") from None
    if not np.isfinite(fs.features).all():
        bad = int((~np.isfinite(fs.features)).any(axis=1).sum())
        raise FeatureFileError(f"{path}: {bad} feature row(s) contain NaN or inf")
    return fs
