"""Camera-aware P x K sampler over pseudo-labels (cluster-contrast's ``RandomMultipleGallerySampler``).

For every pseudo-identity, in random order: draw a random anchor, then K-1 more images of the same
pseudo-identity taken from OTHER cameras when it has any (without replacement if it has at least K
such images, else with replacement), otherwise from its other images (same rule); an identity with a
single image contributes only its anchor. The per-identity groups are concatenated into one stream
and cut into batches; an epoch is ``iters`` batches, passing over the identities as often as needed.
Outliers (label -1) are never sampled.

Everything is a pure function of ``(seed, epoch)``; with ``with_seeds=True`` each index comes paired
with a per-sample augmentation seed, as ``reidkit.data.samplers.PKSampler`` does, so a resumed run
sees the same pixels.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class CameraAwarePKSampler(Sampler):
    """Batch sampler: ``iters`` batches of ``batch_size`` dataset indices (or ``(index, seed)`` pairs).

    ``labels`` (N,) pseudo-labels (-1 = outlier), ``camids`` (N,) camera of each sample.
    Call :meth:`set_labels` after each re-clustering and :meth:`set_epoch` before each epoch.
    """

    def __init__(self, labels: Sequence[int], camids: Sequence[int], batch_size: int, num_instances: int,
                 iters: int, seed: int = 0, with_seeds: bool = False):
        if batch_size < 1 or num_instances < 1 or iters < 1:
            raise ValueError(f"camera-aware sampler needs batch_size, num_instances, iters >= 1; got "
                             f"{batch_size}, {num_instances}, {iters}")
        self.batch_size, self.num_instances, self.iters = batch_size, num_instances, iters
        self.seed, self.with_seeds, self.epoch = seed, with_seeds, 0
        self.set_labels(labels, camids)

    def set_labels(self, labels: Sequence[int], camids: Sequence[int]) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        camids = np.asarray(camids, dtype=np.int64)
        if labels.shape != camids.shape:
            raise ValueError(f"labels {labels.shape} and camids {camids.shape} differ in length")
        keep = np.flatnonzero(labels >= 0)
        if keep.size == 0:
            raise ValueError("no clustered samples to train on (every sample is an outlier): lower "
                             "cluster.min_samples or raise cluster.eps")
        order = keep[np.argsort(labels[keep], kind="stable")]
        ids, starts = np.unique(labels[order], return_index=True)
        self.ids = ids
        self.members = np.split(order, starts[1:])  # per pseudo-id, sorted dataset indices
        self.camids = camids

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.iters

    def _group(self, rng: np.random.Generator, members: np.ndarray) -> list[int]:
        anchor = members[rng.integers(len(members))]
        cams = self.camids[members]
        others = members[cams != self.camids[anchor]]
        if others.size == 0:
            others = members[members != anchor]
            if others.size == 0:
                return [int(anchor)]
        # cluster-contrast compares with K (not K-1) when deciding on replacement
        picks = rng.choice(others, size=self.num_instances - 1, replace=others.size < self.num_instances)
        return [int(anchor), *map(int, picks)]

    def stream(self) -> np.ndarray:
        """The epoch's indices, ``iters * batch_size`` of them, in batch order."""
        rng = np.random.default_rng([self.seed, self.epoch, 0xC1A5])
        need = self.iters * self.batch_size
        out: list[int] = []
        while len(out) < need:
            for j in rng.permutation(len(self.ids)):
                out.extend(self._group(rng, self.members[j]))
        return np.asarray(out[:need], dtype=np.int64)

    def __iter__(self) -> Iterator[list]:
        flat = self.stream()
        for step in range(self.iters):
            batch = flat[step * self.batch_size:(step + 1) * self.batch_size]
            if not self.with_seeds:
                yield batch.tolist()
                continue
            seeds = np.random.SeedSequence([self.seed, self.epoch, step]).generate_state(len(batch), np.uint64)
            yield [(int(i), int(s) & 0x7FFF_FFFF_FFFF_FFFF) for i, s in zip(batch, seeds)]
