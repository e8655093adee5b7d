"""PK identity sampler: every batch holds P identities x K images each (the triplet loss needs positives);
and the sharded epoch sampler of the pre-training methods (``ShardedEpochSampler``, ``sharded_loader``).

The epoch plan follows the official ``RandomIdentitySampler`` (spec §5, sampler row):

1. every identity's images are shuffled; an identity with fewer than K images is first sampled
   **with replacement** up to K; the list is cut into chunks of K (an incomplete last chunk is dropped);
2. while at least P identities still have chunks, draw P of them at random (without replacement)
   and take one chunk from each: that is one batch of P*K indices;
3. the epoch ends when fewer than P identities have chunks left.

DDP: every rank builds the same global plan from ``(seed, epoch)``, and rank r takes batches
r, r + world, r + 2*world, ... of it, cut to the same count on every rank. Ranks therefore see
disjoint batches and run the same number of steps (a rank that waits for a missing step hangs).

The sampler is a *batch* sampler (``DataLoader(batch_sampler=...)``). With ``with_seeds=True``
each index comes paired with a per-sample augmentation seed ``(index, seed)``, a pure function of
``(seed, epoch, position)``, so augmentations repeat exactly after a resume whatever the worker count.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class PKSampler(Sampler):
    """Batches of ``num_ids`` (P) identities x ``num_instances`` (K) images.

    ``pids``: (N,) identity label of every training sample, in dataset order.
    ``rank`` / ``world_size``: DDP position (defaults: read from ``torch.distributed`` if initialised).
    Call ``set_epoch(epoch)`` before each epoch; the plan depends only on ``(seed, epoch)``.
    """

    def __init__(self, pids: Sequence[int], num_ids: int, num_instances: int = 4, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None, with_seeds: bool = False):
        if num_ids < 1 or num_instances < 1:
            raise ValueError(f"PK sampler needs P >= 1 and K >= 1, got P={num_ids}, K={num_instances}")
        if rank is None or world_size is None:
            rank, world_size = _dist_position()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.num_ids, self.num_instances = num_ids, num_instances
        self.seed, self.rank, self.world_size, self.with_seeds = seed, rank, world_size, with_seeds
        self.epoch = 0
        by_pid: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(pids):
            by_pid[int(pid)].append(index)
        self.pids = sorted(by_pid)
        self.index_of = {p: np.asarray(by_pid[p], dtype=np.int64) for p in self.pids}
        if len(self.pids) < num_ids:
            raise ValueError(f"PK sampler: the training set has {len(self.pids)} identities, fewer than "
                             f"P={num_ids} per batch; lower the batch size or num_instances")
        self._cache: tuple[int, list[np.ndarray]] | None = None

    @property
    def batch_size(self) -> int:
        return self.num_ids * self.num_instances

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _global_plan(self) -> list[np.ndarray]:
        """All batches of this epoch, identical on every rank: a list of (P*K,) index arrays."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, self.epoch, 0x5EED])
        K = self.num_instances
        chunks: dict[int, list[np.ndarray]] = {}
        for pid in self.pids:
            idxs = self.index_of[pid]
            if len(idxs) < K:
                idxs = rng.choice(idxs, size=K, replace=True)
            else:
                idxs = rng.permutation(idxs)
            n = len(idxs) // K
            chunks[pid] = [idxs[i * K:(i + 1) * K] for i in range(n)]
        available = [p for p in self.pids if chunks[p]]
        batches = []
        while len(available) >= self.num_ids:
            chosen = rng.choice(len(available), size=self.num_ids, replace=False)
            batch = []
            for j in chosen:
                batch.append(chunks[available[j]].pop())
            batches.append(np.concatenate(batch))
            available = [p for p in available if chunks[p]]
        self._cache = (self.epoch, batches)
        return batches

    def _rank_batches(self) -> list[tuple[int, np.ndarray]]:
        plan = self._global_plan()
        steps = len(plan) // self.world_size
        return [(s * self.world_size + self.rank, plan[s * self.world_size + self.rank]) for s in range(steps)]

    def __len__(self) -> int:
        return len(self._global_plan()) // self.world_size

    def __iter__(self) -> Iterator[list]:
        for global_step, batch in self._rank_batches():
            if not self.with_seeds:
                yield batch.tolist()
                continue
            # one seed per (seed, epoch, global batch, slot): independent of rank count and workers
            seeds = np.random.SeedSequence([self.seed, self.epoch, global_step]).generate_state(len(batch), np.uint64)
            yield [(int(i), int(s) & 0x7FFF_FFFF_FFFF_FFFF) for i, s in zip(batch, seeds)]


def _dist_position() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardedEpochSampler(Sampler[int]):
    """A per-epoch permutation (seeded by ``seed + epoch``) cut to whole global batches, this
    rank's batches taken round-robin, optionally starting ``skip_batches`` in (mid-epoch resume)."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        self.n, self.batch_size, self.rank, self.world_size, self.seed = n, batch_size, rank, world_size, seed
        self.epoch, self.skip_batches = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.skip_batches) * self.batch_size

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.n, generator=g)[: self.batches_per_epoch * self.batch_size * self.world_size]
        mine = perm.view(self.batches_per_epoch, self.world_size, self.batch_size)[:, self.rank]
        return iter(mine[self.skip_batches:].reshape(-1).tolist())


def sharded_loader(dataset: Dataset, batch_size: int, rank: int, world: int, *, seed: int, num_workers: int,
                   pin_memory: bool, what: str = "the dataset",
                   error: type[Exception] = ValueError) -> tuple[DataLoader, ShardedEpochSampler]:
    """The pre-training loader: ``batch_size`` images per process from a ``ShardedEpochSampler`` (call its
    ``set_epoch(epoch, skip_batches)`` before each epoch). ``error`` (naming ``what``) when the data holds
    less than one global batch."""
    sampler = ShardedEpochSampler(len(dataset), batch_size, rank, world, seed=seed)
    if sampler.batches_per_epoch == 0:
        raise error(f"{what} has {len(dataset)} images, fewer than one global batch ({batch_size} x {world}); "
                    "lower data.batch_size")
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        pin_memory=pin_memory, drop_last=True)
    return loader, sampler
