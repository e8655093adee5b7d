"""Decoding Market-sized crops: reidkit's robust ``load_rgb`` vs the loaders peers use.

``load_rgb`` adds full-decode truncation checks, EXIF orientation and mode handling; this measures
what that costs against torchreid/fast-reid's ``Image.open(p).convert('RGB')`` and torchvision's
``decode_image``, on ``--images`` random-texture JPEG crops of 128x64 (Market-1501's size), plus the
throughput of ``ImageDataset`` (decode + record bookkeeping, no transform).

    uv run python bench/image_loading.py [--images 2000] [--height 128 --width 64]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import torch
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_image

    from reidkit.data.image_dataset import ImageDataset
    from reidkit.data.images import load_rgb
    from reidkit.data.records import Record

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root:
        paths = []
        for i in range(args.images):
            # Smooth colour blobs plus noise compress like real crops (not like pure noise).
            base = rng.integers(0, 256, (args.height // 8, args.width // 8, 3), dtype=np.uint8)
            img = Image.fromarray(base).resize((args.width, args.height), Image.BILINEAR)
            noisy = np.clip(np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, img.size[::-1] + (3,)),
                            0, 255).astype(np.uint8)
            p = os.path.join(root, f"{i:06d}.jpg")
            Image.fromarray(noisy).save(p, quality=90)
            paths.append(p)
        mean_kb = sum(os.path.getsize(p) for p in paths) / len(paths) / 1024
        print(f"{args.images} JPEG crops {args.height}x{args.width}, {mean_kb:.1f} KiB each, 1 thread")

        def peer_pil():
            for p in paths:
                Image.open(p).convert("RGB")

        def peer_tv():
            for p in paths:
                decode_image(p, mode=ImageReadMode.RGB)

        def ours():
            for p in paths:
                load_rgb(p)

        ds = ImageDataset([Record(p, i % 100, i % 6) for i, p in enumerate(paths)])

        def ours_dataset():
            for i in range(len(ds)):
                ds[i]

        rows = [("PIL open + convert('RGB') (torchreid/fast-reid)", best_of(peer_pil, args.repeats)),
                ("torchvision.io.decode_image", best_of(peer_tv, args.repeats)),
                ("reidkit load_rgb", best_of(ours, args.repeats)),
                ("reidkit ImageDataset[i]", best_of(ours_dataset, args.repeats))]
        print(f"{'loader':50s} {'images/s':>10s} {'us/image':>9s}")
        for name, s in rows:
            print(f"{name:50s} {args.images / s:10,.0f} {s / args.images * 1e6:9.1f}")
        pil = rows[0][1]
        print(f"load_rgb / PIL time ratio: {rows[2][1] / pil:.2f} (1.00 = no overhead for the checks)")


if __name__ == "__main__":
    main()
