"""Tracklets -> frames: frame samplers, the training clip dataset and loader, and the frame view.

Frame samplers (``sample_frames``; torchreid's ``sample_method`` vocabulary, ``seq_len`` 15 by
default as in the field):
  * ``evenly``: ``seq_len`` frames spread over the whole tracklet, the centre frame of each of
    ``seq_len`` equal segments (deterministic: the test-time sampler);
  * ``random``: ``seq_len`` frames drawn without replacement and kept in temporal order (the
    training sampler, torchreid's ``random``);
  * ``all``: every frame. Memory stays bounded because frames are never batched per tracklet:
    extraction (``reidkit.evaluation.video_extract``) streams the frames of all tracklets through
    the backbone ``batch_size`` frames at a time and keeps only their (D,) features.
A tracklet shorter than ``seq_len`` gives all its frames and then repeats the last one (evenly and
random alike), as torchreid pads.

Training clips (``TrackletClips``): ``[i] -> (clip (T, 3, H, W), pid, camid, i)``. One augmentation
draw per clip: every frame is transformed under the same torch seed, so flip, crop and erasing
agree across the frames of a clip. ``build_video_train_loader`` serves P x K batches of clips with
the image pipeline's PK sampler and per-sample seeds (a resumed run sees the same clips).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from reidkit.data.images import ImageError, load_rgb
from reidkit.data.records import DatasetError, Record, Tracklet

SAMPLE_METHODS = ("evenly", "random", "all")
DEFAULT_SEQ_LEN = 15


def sample_frames(num_frames: int, seq_len: int = DEFAULT_SEQ_LEN, method: str = "evenly",
                  generator: torch.Generator | None = None) -> np.ndarray:
    """Indices (int64, temporal order) of the frames to use from a tracklet of ``num_frames``.

    ``evenly`` / ``random`` return exactly ``seq_len`` indices; ``all`` returns ``arange(num_frames)``.
    ``random`` draws from ``generator`` (default: torch's global generator, seeded per sample by the
    training loader).
    """
    if method not in SAMPLE_METHODS:
        raise ValueError(f"unknown frame sampler {method!r}; expected one of {', '.join(SAMPLE_METHODS)}")
    if num_frames < 1:
        raise DatasetError("cannot sample frames from an empty tracklet")
    if method == "all":
        return np.arange(num_frames, dtype=np.int64)
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    n = num_frames
    if n <= seq_len:
        return np.concatenate([np.arange(n), np.full(seq_len - n, n - 1)]).astype(np.int64)
    if method == "evenly":
        return ((2 * np.arange(seq_len) + 1) * n // (2 * seq_len)).astype(np.int64)
    pick = torch.randperm(n, generator=generator)[:seq_len].sort().values
    return pick.numpy().astype(np.int64)


def frame_records(tracklets: Sequence[Tracklet]) -> tuple[list[Record], np.ndarray]:
    """Every frame as a ``Record`` (the tracklet's pid and camid) + (F,) int64 tracklet index per frame."""
    records = [Record(path, t.pid, t.camid) for t in tracklets for path in t.frames]
    owner = np.repeat(np.arange(len(tracklets), dtype=np.int64), [len(t.frames) for t in tracklets])
    return records, owner


def check_tracklets(tracklets: Sequence[Tracklet], what: str = "tracklets") -> None:
    """Fast checks before heavy work: a non-empty list of ``Tracklet`` (empty ones cannot be built)."""
    if not len(tracklets):
        raise DatasetError(f"{what}: no tracklets")
    bad = [i for i, t in enumerate(tracklets) if not isinstance(t, Tracklet)]
    if bad:
        raise DatasetError(f"{what}: {len(bad)} item(s) are not Tracklet records (first at index {bad[0]})")


class TrackletClips(Dataset):
    """Training clips: ``[i] -> (clip (seq_len, 3, H, W) float, pid, camid, i)``.

    ``on_error='skip'``: an unreadable frame is replaced by the next readable frame of the same
    tracklet (counted in ``num_bad_frames``); a tracklet with no readable frame raises, naming it.
    ``'raise'`` stops at the first unreadable frame.
    """

    def __init__(self, tracklets: Sequence[Tracklet], transform: Callable, seq_len: int = 8,
                 method: str = "random", on_error: str = "skip"):
        check_tracklets(tracklets, "training tracklets")
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        if method == "all":
            raise ValueError("training clips need a fixed length: use frame sampler 'random' or 'evenly'")
        self.tracklets, self.transform = list(tracklets), transform
        self.seq_len, self.method, self.on_error = seq_len, method, on_error
        self._bad = torch.zeros(sum(len(t.frames) for t in self.tracklets), dtype=torch.bool).share_memory_()
        self._offset = np.concatenate([[0], np.cumsum([len(t.frames) for t in self.tracklets])])

    def __len__(self) -> int:
        return len(self.tracklets)

    @property
    def num_bad_frames(self) -> int:
        return int(self._bad.sum())

    def _load(self, i: int, j: int):
        t = self.tracklets[i]
        n = len(t.frames)
        for k in range(n):
            jj = (j + k) % n
            flat = self._offset[i] + jj
            if k and self._bad[flat]:
                continue
            try:
                return load_rgb(t.frames[jj])
            except ImageError:
                if self.on_error == "raise":
                    raise
                self._bad[flat] = True
        raise DatasetError(f"tracklet {i} (pid {t.pid}, camera {t.camid}, first frame {t.frames[0]}): "
                           f"none of its {n} frames can be read")

    def __getitem__(self, item):
        """``item``: an index, or ``(index, seed)`` from the PK sampler (the clip is then a pure
        function of the seed; the caller's RNG state is left as it was)."""
        index, seed = item if isinstance(item, tuple) else (item, None)
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                # CPU generator only: torch.manual_seed also queues lazy CUDA/MTIA/XPU seeding, each
                # with a stack capture, ~20 ms a call on a loaded CPU-only machine
                torch.default_generator.manual_seed(seed)
            return self._clip(index)

    def _clip(self, index: int):
        t = self.tracklets[index]
        idx = sample_frames(len(t.frames), self.seq_len, self.method)
        state = torch.get_rng_state()  # every frame replays the same draws: one augmentation per clip
        frames = []
        for j in idx.tolist():
            img = self._load(index, j)
            torch.set_rng_state(state)
            frames.append(self.transform(img))
        return torch.stack(frames), t.pid, t.camid, index


def build_video_train_loader(tracklets: Sequence[Tracklet], transform: Callable, *, batch_size: int,
                             num_instances: int, seed: int, seq_len: int = 8, method: str = "random",
                             num_workers: int = 0, pin_memory: bool = False, on_error: str = "skip",
                             rank: int = 0, world_size: int = 1) -> tuple[DataLoader, object, TrackletClips]:
    """A loader of ``(clips (B, T, 3, H, W), pids (B,), camids (B,), indices (B,))`` P x K batches.

    Returns ``(loader, sampler, dataset)``; call ``sampler.set_epoch(e)`` before each epoch.
    """
    from reidkit.data.samplers import PKSampler

    if batch_size % num_instances:
        raise ValueError(f"batch size {batch_size} is not a multiple of num_instances {num_instances}")
    dataset = TrackletClips(tracklets, transform, seq_len, method, on_error)
    sampler = PKSampler([t.pid for t in dataset.tracklets], batch_size // num_instances, num_instances,
                        seed=seed, rank=rank, world_size=world_size, with_seeds=True)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                        pin_memory=pin_memory, persistent_workers=num_workers > 0,
                        generator=torch.Generator().manual_seed(seed))
    return loader, sampler, dataset


__all__ = ["SAMPLE_METHODS", "DEFAULT_SEQ_LEN", "sample_frames", "frame_records", "check_tracklets",
           "TrackletClips", "build_video_train_loader"]
