"""Training throughput and data starvation: reidkit's PK loader vs a naive ImageFolder loader.

For each loader, run real training steps (forward, triplet + CE loss, backward, SGD step) and
split every step's wall time into *waiting for the batch* and *compute*. The target of issue 4:
at least 90% of step time in compute for 256x128 images read from local disk.

    uv run python bench/train_speed.py                       # CPU defaults (vit_tiny at 256x128)
    uv run python bench/train_speed.py --preset vit_small --batch-size 64 --device cuda --workers 8

Loaders compared in the same run, on the same JPEG files (one folder per identity):
  * peer: torchvision ``ImageFolder`` + ``DataLoader(shuffle=True, num_workers=0)``, the naive
    loop many scripts start from (decode + transform in the training process);
  * reidkit: ``build_train_loader`` (PK batches, persistent workers, per-sample seeds), without
    and with the decoded-image cache, and with the cache plus device-side augmentation
    (``data/device_augment.py``: workers deliver uint8 + draws, flip/pad/crop/erasing on the device).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def write_images(root: Path, ids: int, per_id: int, size: tuple[int, int]) -> list[tuple[str, int]]:
    """Person-sized JPEGs with smooth structure plus noise (decode cost like real crops)."""
    rng = np.random.default_rng(0)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    items = []
    for pid in range(ids):
        d = root / f"{pid:04d}"
        d.mkdir(parents=True, exist_ok=True)
        for k in range(per_id):
            base = rng.uniform(0, 255, 3)
            img = base + 40 * np.sin(yy[..., None] / rng.uniform(5, 30) + rng.uniform(0, 6, 3))
            img += 25 * np.cos(xx[..., None] / rng.uniform(5, 20)) + rng.normal(0, 12, (h, w, 3))
            path = d / f"{pid:04d}_c1s1_{k:06d}_00.jpg"
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path, quality=90)
            items.append((str(path), pid))
    return items


def run_steps(loader, model, criterion, optimizer, device, steps: int, warmup: int, augment=None,
              amp_dtype: torch.dtype | None = None) -> dict:
    """Train ``warmup + steps`` iterations; time the measured ones. Loops over the loader as needed.

    ``augment``: the device half of ``device_augment`` (batches arrive as uint8 + draws);
    ``amp_dtype``: autocast the forward pass and loss (bench/gpu_suite.py runs bf16)."""
    wait = compute = 0.0
    n_img = done = 0
    it = iter(loader)
    t_prev = time.perf_counter()
    while done < warmup + steps:
        try:
            imgs, pids = next(it)[:2]
        except StopIteration:
            it = iter(loader)
            continue
        t_got = time.perf_counter()
        imgs, pids = imgs.to(device, non_blocking=True), pids.to(device, non_blocking=True)
        if augment is not None:
            imgs = augment(imgs)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits, feat = model(imgs)
            loss = criterion[0](logits.float(), pids) + criterion[1](feat.float(), pids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_done = time.perf_counter()
        if done >= warmup:
            wait += t_got - t_prev
            compute += t_done - t_got
            n_img += imgs.shape[0]
        done += 1
        t_prev = time.perf_counter()
    total = wait + compute
    return {"images_per_s": n_img / total, "wait_share": wait / total, "compute_share": compute / total}


def loader_rate(loader, batches: int, consume=None, sync=None, warmup: int = 0) -> float:
    """Images/s of ``batches`` batches of ``loader`` (restarted when it runs out), each passed to
    ``consume`` (default: nothing; the loader alone), after ``warmup`` untimed batches. ``sync`` waits
    for the device (``torch.cuda.synchronize``) before the clock is read. A batch's size is that of its
    last element (the indices)."""
    sync = sync or (lambda: None)
    it, n = iter(loader), 0

    def next_batch():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(loader)
            return next(it)

    for _ in range(warmup):
        batch = next_batch()
        if consume is not None:
            consume(batch)
    sync()
    t0 = time.perf_counter()
    for _ in range(batches):
        batch = next_batch()
        if consume is not None:
            consume(batch)
        n += len(batch[-1])
    sync()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="vit_tiny", help="model preset (img_size set to --size)")
    ap.add_argument("--size", type=int, nargs=2, default=[256, 128])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--ids", type=int, default=64)
    ap.add_argument("--per-id", type=int, default=8)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--workers", type=int, default=-1, help="reidkit loader workers (-1: cores - 1)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for compute (0: all cores)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    from reidkit.data.device_augment import build_device_train_loader
    from reidkit.data.records import Record
    from reidkit.data.train_loader import build_train_loader, default_num_workers
    from reidkit.data.transforms import build_train_transform
    from reidkit.losses.softmax import cross_entropy
    from reidkit.losses.triplet import TripletLoss
    from reidkit.models import build_model
    from reidkit.methods.optim import build_optimizer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    size = tuple(args.size)
    workers = default_num_workers() if args.workers < 0 else args.workers
    console = Console(width=140)
    with tempfile.TemporaryDirectory(prefix="reidkit_bench_") as tmp:
        t0 = time.perf_counter()
        items = write_images(Path(tmp), args.ids, args.per_id, size)
        console.print(f"wrote {len(items)} JPEGs of {size[0]}x{size[1]} in {time.perf_counter() - t0:.1f} s; "
                      f"model {args.preset}, batch {args.batch_size}, device {device}, "
                      f"{os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}, workers {workers}")
        tf = build_train_transform(size)
        model = build_model(args.preset, num_classes=args.ids, img_size=size).to(device).train()
        optimizer = build_optimizer(model, "sgd", 4e-4, 1e-4)
        criterion = (cross_entropy, TripletLoss())

        peer = DataLoader(ImageFolder(tmp, transform=tf), batch_size=args.batch_size, shuffle=True,
                          num_workers=0, drop_last=True)
        records = [Record(p, pid, 0) for p, pid in items]
        loaders = {"peer: ImageFolder, 0 workers": (peer, None)}
        kw = dict(batch_size=args.batch_size, num_instances=4, seed=0, size=size, num_workers=workers,
                  pin_memory=device.type == "cuda", progress=False)
        for cache in ("none", "memory"):
            loader, _, _ = build_train_loader(records, tf, cache=cache, **kw)
            loaders[f"reidkit: PK, {workers} workers, cache={cache}"] = (loader, None)
        loader, _, _, augment = build_device_train_loader(records, tf, cache="memory", **kw)
        loaders[f"reidkit: PK, {workers} workers, cache=memory, device augment"] = (loader, augment.to(device))

        table = Table(title=f"training step time split ({args.preset} {size[0]}x{size[1]}, batch {args.batch_size})")
        for col in ("loader", "loader alone img/s", "train img/s", "compute share", "waiting for data"):
            table.add_column(col, justify="left" if col == "loader" else "right")
        results = {}
        for name, (loader, augment) in loaders.items():
            alone = loader_rate(loader, 6)
            r = run_steps(loader, model, criterion, optimizer, device, args.steps, args.warmup, augment)
            results[name] = (alone, r)
            table.add_row(name, f"{alone:.0f}", f"{r['images_per_s']:.1f}", f"{r['compute_share'] * 100:.1f}%",
                          f"{r['wait_share'] * 100:.1f}%")
        console.print(table)
        peer_r = results["peer: ImageFolder, 0 workers"][1]
        for name, (alone, r) in results.items():
            if name.startswith("reidkit"):
                console.print(f"{name}: {r['images_per_s'] / peer_r['images_per_s']:.2f}x the peer's training "
                              f"throughput; compute share {r['compute_share'] * 100:.1f}% "
                              f"(target >= 90%: {'met' if r['compute_share'] >= 0.9 else 'NOT met'})")


if __name__ == "__main__":
    main()
