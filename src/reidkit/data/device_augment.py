"""Train augmentation on the training device: workers draw, the device paints.

The per-sample path (``transforms.build_train_transform``) decodes, resizes, flips, pads, crops,
normalises and erases one PIL image at a time in a DataLoader worker. Here the worker keeps only
the cheap part: the (cached or PIL-resized) uint8 image and the *random draws* of that sample,
made under the sample's seed in exactly the order the per-sample transform makes them:

    flip  ``torch.rand(1) < p``          (RandomHorizontalFlip)
    crop  ``torch.randint`` row, column  (RandomCrop on the zero-padded image)
    erase ``torch.rand`` gate, then per attempt area, aspect and, once a box fits, its top/left
          and -- for ``fill='pixel'`` -- the box's N(0, 1) noise ``torch.randn(c, h, w)``

``DeviceAugment`` then applies flip + pad + crop as one gather, the uint8 -> float / 255 and the
normalisation as tensor ops, and erasing as one masked scatter, for the whole batch on the device.
Same draws, same ops, same float order: on CPU the batch equals the per-sample path bit for bit
(``tests/data/test_device_augment.py``), so per-sample seeding and bit-identical resume are kept.

``decode_images`` decodes encoded files batched on the device (nvjpeg via
``torchvision.io.decode_jpeg(device='cuda')``) with PIL as the fallback for other formats and bad
files; ``resize_images`` resizes those variable-size uint8 images on the device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms as T

from reidkit.data.transforms import RandomErasing


@dataclass
class UInt8Batch:
    """A batch as workers deliver it: uint8 images plus each sample's random draws.

    ``images`` (B, H, W, 3) uint8 (already resized); ``flip`` (B,) bool; ``top``/``left`` (B,) int64
    crop offsets in the padded image; ``erase`` (B, 4) int64 box (top, left, height, width), height 0
    when not erased; ``noise`` (M,) float32: the erased boxes' pixel noise, concatenated in batch
    order, each box flattened (C, h, w).
    """

    images: torch.Tensor
    flip: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    erase: torch.Tensor
    noise: torch.Tensor

    @property
    def shape(self) -> torch.Size:
        return self.images.shape

    def __len__(self) -> int:
        return len(self.images)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "UInt8Batch":
        return UInt8Batch(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device, non_blocking: bool = False) -> "UInt8Batch":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "UInt8Batch":  # called by DataLoader(pin_memory=True)
        return self._map(lambda t: t.pin_memory())


@dataclass(frozen=True)
class AugmentRecipe:
    """What ``build_train_transform`` / ``build_usl_train_transform`` do after the resize."""

    size: tuple[int, int]
    hflip: float
    pad: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    erasing: RandomErasing | None

    @classmethod
    def from_transform(cls, transform: T.Compose) -> "AugmentRecipe":
        """Read a train pipeline built by ``reidkit.data.transforms``; refuse any step it cannot run."""
        size = pad = None
        hflip, mean, std, erasing = 0.0, None, None, None
        for step in transform.transforms:
            if isinstance(step, T.Resize):
                size = tuple(step.size)
            elif isinstance(step, T.RandomHorizontalFlip):
                hflip = float(step.p)
            elif isinstance(step, T.Pad):
                if not isinstance(step.padding, int) or step.fill != 0 or step.padding_mode != "constant":
                    raise ValueError(f"device augmentation: only a constant zero pad of n pixels, got {step}")
                pad = step.padding
            elif isinstance(step, T.RandomCrop):
                if step.padding is not None or tuple(step.size) != size:
                    raise ValueError(f"device augmentation: RandomCrop must crop back to the resize, got {step}")
            elif isinstance(step, T.ToTensor):
                pass
            elif isinstance(step, T.Normalize):
                mean, std = tuple(map(float, step.mean)), tuple(map(float, step.std))
            elif isinstance(step, RandomErasing):
                erasing = step
            else:
                raise ValueError(f"device augmentation cannot run transform step {type(step).__name__}")
        if size is None or mean is None:
            raise ValueError("device augmentation needs a pipeline with a Resize and a Normalize step")
        return cls(size, hflip, pad or 0, mean, std, erasing)


def draw_params(recipe: AugmentRecipe, channels: int = 3) -> tuple:
    """One sample's draws from torch's global RNG, in the per-sample transform's order.

    Returns ``(flip, top, left, (ey, ex, eh, ew), noise)``; ``noise`` is the flat erasing noise
    (empty unless a box is erased with ``fill='pixel'``).
    """
    h, w = recipe.size
    flip = bool(recipe.hflip > 0 and torch.rand(1) < recipe.hflip)
    top = left = 0
    if recipe.pad > 0:
        top = int(torch.randint(0, 2 * recipe.pad + 1, size=(1,)).item())
        left = int(torch.randint(0, 2 * recipe.pad + 1, size=(1,)).item())
    box, noise = (0, 0, 0, 0), torch.empty(0)
    er = recipe.erasing
    if er is not None and torch.rand(()).item() < er.p:
        for _ in range(er.attempts):
            target = (er.area[0] + (er.area[1] - er.area[0]) * torch.rand(()).item()) * h * w
            ratio = er._draw_aspect()
            eh = int(round(math.sqrt(target * ratio)))
            ew = int(round(math.sqrt(target / ratio)))
            if 0 < eh < h and 0 < ew < w:
                ey = int(torch.randint(0, h - eh + 1, ()).item())
                ex = int(torch.randint(0, w - ew + 1, ()).item())
                box = (ey, ex, eh, ew)
                if er.fill == "pixel":
                    noise = torch.randn((channels, eh, ew), dtype=torch.float32).flatten()
                break
    return flip, top, left, box, noise


class SampleDraws:
    """Worker-side transform: resized image -> ``(uint8 (H, W, 3) tensor, draws)`` for ``collate``."""

    def __init__(self, recipe: AugmentRecipe):
        self.recipe = recipe

    def __call__(self, img) -> tuple:
        arr = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))
        if arr.shape[:2] != self.recipe.size:
            raise ValueError(f"device augmentation expects {self.recipe.size} images, got {tuple(arr.shape[:2])}")
        return (arr, *draw_params(self.recipe, arr.shape[2]))


def worker_transform(transform: T.Compose) -> tuple[T.Compose, "DeviceAugment"]:
    """Split a train pipeline into ``(Compose[Resize, SampleDraws]``, the device half)."""
    recipe = AugmentRecipe.from_transform(transform)
    resize = next(s for s in transform.transforms if isinstance(s, T.Resize))
    return T.Compose([resize, SampleDraws(recipe)]), DeviceAugment(recipe)


def collate(batch: Sequence[tuple]) -> tuple[UInt8Batch, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[((img, flip, top, left, box, noise), pid, camid, index), ...]`` -> ``(UInt8Batch, pids, camids, indices)``."""
    samples = [b[0] for b in batch]
    ub = UInt8Batch(images=torch.stack([s[0] for s in samples]),
                    flip=torch.tensor([s[1] for s in samples], dtype=torch.bool),
                    top=torch.tensor([s[2] for s in samples], dtype=torch.int64),
                    left=torch.tensor([s[3] for s in samples], dtype=torch.int64),
                    erase=torch.tensor([s[4] for s in samples], dtype=torch.int64).reshape(-1, 4),
                    noise=torch.cat([s[5] for s in samples]))
    rest = [torch.tensor([b[i] for b in batch], dtype=torch.int64) for i in (1, 2, 3)]
    return (ub, *rest)


class DeviceAugment(torch.nn.Module):
    """``UInt8Batch`` on any device -> (B, 3, H, W) float32, normalised, augmented by its draws."""

    def __init__(self, recipe: AugmentRecipe):
        super().__init__()
        self.recipe = recipe
        self.register_buffer("mean", torch.tensor(recipe.mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(recipe.std).view(-1, 1, 1), persistent=False)
        er = recipe.erasing
        fill = None if er is None or er.fill == "pixel" else torch.tensor(er.fill).view(-1, 1, 1)
        self.register_buffer("fill", fill, persistent=False)

    def forward(self, batch: UInt8Batch) -> torch.Tensor:
        x = batch.images.permute(0, 3, 1, 2)                    # (B, C, H, W) uint8, a view
        b, c, h, w = x.shape
        dev, p = x.device, self.recipe.pad
        if p:
            x = F.pad(x, (p, p, p, p))                           # zeros, like T.Pad(fill=0)
        wp = x.shape[-1]
        # flip, pad and crop as one gather: flipped-then-padded[y, x] = padded[y, Wp - 1 - x]
        rows = batch.top[:, None] + torch.arange(h, device=dev)                  # (B, H)
        cols = batch.left[:, None] + torch.arange(w, device=dev)                 # (B, W)
        cols = torch.where(batch.flip[:, None], wp - 1 - cols, cols)
        x = x[torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
              rows[:, None, :, None], cols[:, None, None, :]]
        # ToTensor then Normalize, in the same float order as torchvision (bit-identical on CPU)
        x = x.to(torch.float32).div(255).sub_(self.mean.to(dev)).div_(self.std.to(dev))
        if self.recipe.erasing is not None:
            x = self._erase(x, batch)
        return x

    def _erase(self, x: torch.Tensor, batch: UInt8Batch) -> torch.Tensor:
        b, c, h, w = x.shape
        ey, ex, eh, ew = batch.erase.unbind(1)
        r = torch.arange(h, device=x.device)[None, :, None]
        q = torch.arange(w, device=x.device)[None, None, :]
        inside = ((r >= ey[:, None, None]) & (r < (ey + eh)[:, None, None])
                  & (q >= ex[:, None, None]) & (q < (ex + ew)[:, None, None]))   # (B, H, W)
        mask = inside[:, None].expand(b, c, h, w)
        if self.fill is None:
            # masked order is (b, c, y, x): exactly each box's (c, h, w) noise, concatenated by sample
            return x.masked_scatter_(mask, batch.noise.to(x.device, x.dtype))
        return torch.where(mask, self.fill[:c].to(x.device, x.dtype), x)


def build_device_train_loader(records, transform: T.Compose, **kwargs):
    """``build_train_loader`` whose batches are ``(UInt8Batch, pids, camids, indices)``.

    Returns ``(loader, sampler, dataset, augment)``: run ``augment(batch.to(device))`` on the device.
    Same keyword arguments as ``train_loader.build_train_loader`` (cache, workers, seed, ...).
    """
    from reidkit.data.train_loader import build_train_loader

    wt, augment = worker_transform(transform)
    loader, sampler, dataset = build_train_loader(records, wt, collate_fn=collate, **kwargs)
    return loader, sampler, dataset, augment


# --------------------------------------------------------------------------- decode + resize on device

def is_plain_jpeg(data: bytes) -> bool:
    """A baseline/extended 3-component JPEG without an EXIF orientation that nvjpeg decodes as
    ``load_rgb`` would; progressive, grey, CMYK, truncated and EXIF-rotated files go to PIL."""
    if len(data) < 4 or data[:2] != b"\xff\xd8" or b"\xff\xd9" not in data[-65536:]:
        return False
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:              # fill byte
            i += 1
            continue
        seg = int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xE1 and data[i + 4:i + 8] == b"Exif":
            return False                # may carry an orientation: PIL applies it
        if marker in (0xC0, 0xC1):      # baseline / extended sequential
            return i + 10 <= n and data[i + 9] == 3
        if 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return False                # progressive, lossless, arithmetic
        if marker == 0xDA:
            return False
        i += 2 + seg
    return False


def read_encoded(path: str) -> tuple[torch.Tensor | None, np.ndarray | None, str | None]:
    """Worker side of device decoding: ``(jpeg bytes, None, None)`` for nvjpeg, else the PIL-decoded
    ``(None, uint8 (H, W, 3), None)``, or ``(None, None, problem)`` for an unreadable file."""
    from reidkit.data.images import ImageError, load_rgb

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        data = b""
    if is_plain_jpeg(data):
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), None, None
    try:
        return None, np.array(load_rgb(path), dtype=np.uint8), None
    except ImageError as e:
        return None, None, str(e)


def _decode_jpeg(data, device):
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():   # torchvision 0.29 flags its decoders as moving to torchcodec
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def decode_images(encoded: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """Decode JPEG byte tensors to (3, h, w) uint8 on ``device`` (nvjpeg on CUDA, batched).

    An image nvjpeg refuses comes back ``None``; the caller falls back to PIL for it.
    """
    if not encoded:
        return []
    try:
        out = _decode_jpeg(list(encoded), device)
        return [o.to(device) for o in out]
    except RuntimeError:
        pass
    res: list[torch.Tensor | None] = []
    for data in encoded:           # one bad file fails the batched call: retry one by one
        try:
            res.append(_decode_jpeg(data, device).to(device))
        except RuntimeError:
            res.append(None)
    return res


class EncodedFiles(torch.utils.data.Dataset):
    """``[i] -> (i, jpeg bytes | None, PIL-decoded uint8 array | None, problem | None)``: the file reading of
    device decoding, for DataLoader workers (``read_encoded`` per path)."""

    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return (i, *read_encoded(self.paths[i]))


def decode_read(paths: Sequence[str], reads: Sequence[tuple], device: torch.device,
                decode: Callable | None = None) -> tuple[list[torch.Tensor | None], list[str | None]]:
    """The images of ``read_encoded`` results ``(jpeg bytes | None, array | None, problem | None)``.

    JPEG bytes are decoded together by ``decode`` (``decode_images``: nvjpeg on CUDA); a file it
    refuses, and every other format, is PIL's (``load_rgb``). Returns ``(images, problems)``: per file
    a (3, h, w) uint8 tensor on ``device`` and None, or None and the problem of an unreadable file.
    """
    from reidkit.data.images import ImageError, load_rgb

    images: list[torch.Tensor | None] = [None] * len(reads)
    problems: list[str | None] = [None] * len(reads)
    decode = decode or decode_images
    jpeg = [j for j, r in enumerate(reads) if r[0] is not None]
    for j, img in zip(jpeg, decode([reads[j][0] for j in jpeg], device)):
        images[j] = img
    for j, (data, arr, problem) in enumerate(reads):
        if images[j] is not None:
            continue
        if data is not None:                 # the decoder refused it: PIL decides
            try:
                arr = np.array(load_rgb(paths[j]), dtype=np.uint8)
            except ImageError as e:
                problem = str(e)
        if problem is not None:
            problems[j] = problem
        else:
            images[j] = torch.from_numpy(arr).permute(2, 0, 1).to(device, non_blocking=True)
    return images, problems


_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}


def resize_images(images: Sequence[torch.Tensor], size: tuple[int, int],
                  interpolation: str = "bilinear") -> torch.Tensor:
    """Variable-size (3, h, w) uint8 images -> (B, 3, H, W) uint8 on their device.

    Images of one size are resized together (antialiased like ``T.Resize`` on tensors, which
    matches PIL to about one grey level); images already at ``size`` are copied untouched.
    """
    if interpolation not in _MODES:
        raise ValueError(f"unknown interpolation {interpolation!r}; expected one of {sorted(_MODES)}")
    out = torch.empty((len(images), 3, *size), dtype=torch.uint8, device=images[0].device)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape[-2:]), []).append(i)
    for shape, idx in groups.items():
        x = torch.stack([images[i] for i in idx])
        if shape != tuple(size):
            mode = _MODES[interpolation]
            x = F.interpolate(x.float(), size=size, mode=mode, antialias=mode != "nearest",
                              align_corners=None if mode == "nearest" else False)
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        out[torch.tensor(idx, device=out.device)] = x
    return out


__all__ = ["UInt8Batch", "AugmentRecipe", "DeviceAugment", "SampleDraws", "draw_params", "worker_transform",
           "collate", "build_device_train_loader", "decode_images", "decode_read", "resize_images", "read_encoded",
           "EncodedFiles", "is_plain_jpeg"]
