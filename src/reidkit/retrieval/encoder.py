"""Images -> retrieval features with a reidkit model, the same way for gallery and queries.

Gallery images go through :func:`reidkit.evaluation.extract.extract_features`; a query image
(an upload, already decoded) goes through the very same test transform and flip setting, so an
uploaded copy of a gallery image gets that image's feature (cosine 1.0).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from reidkit.retrieval.index import GalleryIndex, IndexFileError, file_sha256


class ImageEncoder:
    """A loaded model plus its test transform. ``flip`` averages with the mirrored image."""

    def __init__(self, model_path: str | Path, flip: bool = False):
        from reidkit.data.transforms import build_test_transform
        from reidkit.models import load_model, read_model_config

        self.path = Path(model_path)
        self.model = load_model(self.path)
        self.flip = flip
        size = read_model_config(self.path).get("img_size") or (256, 128)
        self.transform = build_test_transform(tuple(size))
        self.feat_dim = int(self.model.feat_dim)

    @classmethod
    def for_index(cls, model: str | Path | None, index: GalleryIndex | None) -> "ImageEncoder":
        """The model to embed queries for ``index``: ``model``, else the one the index was built with."""
        recorded = (index.model or {}) if index is not None else {}
        if model is None:
            if not recorded.get("path"):
                raise IndexFileError("image queries need a model: pass --model MODEL "
                                     "(this index was built from a feature file)")
            model = recorded["path"]
            if not Path(model).is_file():
                raise IndexFileError(f"the index's model {model} is gone; pass --model MODEL")
        enc = cls(model, flip=bool(recorded.get("flip", False)))
        if index is not None and enc.feat_dim != index.dim:
            raise IndexFileError(f"dimension mismatch: index {index.folder or ''} has dim {index.dim}, "
                                 f"model {model} gives dim {enc.feat_dim}")
        return enc

    def describe(self) -> dict:
        """What the index records about its model (so queries can reuse it)."""
        return {"path": str(self.path.resolve()), "sha256": file_sha256(self.path), "feat_dim": self.feat_dim,
                "flip": self.flip}

    def encode_files(self, paths: list[str], batch_size: int = 64) -> np.ndarray:
        """(N, D) float32 features of image files (unreadable ones are an error: queries are few)."""
        from reidkit.evaluation.extract import extract_features

        fs = extract_features(self.model, list(paths), self.transform, batch_size=batch_size, flip=self.flip,
                              on_error="raise", description="embed queries")
        return fs.features

    @torch.inference_mode()
    def encode_images(self, images: list) -> np.ndarray:
        """(N, D) float32 features of decoded RGB ``PIL.Image``s."""
        batch = torch.stack([self.transform(img) for img in images])
        feats = self.model(batch)
        if self.flip:
            feats = (feats + self.model(batch.flip(3))) / 2
        return feats.float().cpu().numpy()


def encode_gallery(source: str | Path, model: str | Path | None, dataset: str | None = None,
                   split: str = "gallery", batch_size: int = 64, index: GalleryIndex | None = None,
                   flip: bool = False):
    """Embed a gallery: ``(features, pids, camids, paths, roots, model_info)``.

    ``source`` is a dataset root (with ``dataset``, e.g. ``market1501``; the ``split`` is indexed),
    a folder of images (Market-style names give pid and camera, other names -1), or one image.
    Images that cannot be decoded are skipped and counted in the progress output.
    """
    from reidkit.data.images import is_image_file
    from reidkit.data.records import Record
    from reidkit.evaluation.extract import extract_features, records_from_folder

    source = Path(source)
    if not source.exists():
        raise IndexFileError(f"{source}: not found")
    if model is None and not (index is not None and index.model):
        raise IndexFileError(f"{source}: building from images needs --model MODEL "
                             "(or pass a feature file from `reidkit extract`)")
    # The images are listed (and a wrong source refused) before the model is loaded.
    if dataset:
        from reidkit.data.datasets import load_dataset

        records = load_dataset(dataset, source).split(split)
        # a dataset folder is the root; for a CSV manifest the images' common folder (not the file)
        roots = [source] if source.is_dir() else []
    elif source.is_dir():
        records, roots = records_from_folder(source), [source]
    elif source.suffix.lower() == ".csv":
        raise IndexFileError(f"{source}: is a CSV manifest; index its images with --dataset csv "
                             f"(--split {split} picks the rows), or pass a feature file from `reidkit extract`")
    elif is_image_file(source):
        records, roots = [Record(str(source), -1, -1)], [source.parent]
    else:
        raise IndexFileError(f"{source}: neither a feature file (.safetensors, .npz), an image, nor a folder")
    if not records:
        raise IndexFileError(f"{source}: no images to index" + (f" in its {split} split" if dataset else ""))
    enc = ImageEncoder.for_index(model, index) if index is not None else ImageEncoder(model, flip=flip)
    fs = extract_features(enc.model, records, enc.transform, batch_size=batch_size, flip=enc.flip,
                          description="embed gallery")
    if len(fs) == 0:
        raise IndexFileError(f"{source}: none of the {len(records)} images could be read")
    paths = [os.path.abspath(p) for p in fs.paths]
    return fs.features, fs.pids, fs.camids, paths, [Path(os.path.abspath(r)) for r in roots], enc.describe()

