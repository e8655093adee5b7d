"""Listing a LUPerson-like pre-training pool: reidkit's scanner vs torchvision's ImageFolder and glob.

The official DINO code builds ``torchvision.datasets.ImageFolder(LUP)`` over 4.18M images; this
creates ``--files`` empty ``.jpg`` files in ``--folders`` shard folders (plus a few non-images) under
a temp dir and times building the sorted path list each way, checking that all agree.

    uv run python bench/dataset_scan.py [--files 200000] [--folders 200]
"""
from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time


def make_pool(root: str, files: int, folders: int) -> None:
    for f in range(folders):
        d = os.path.join(root, "images", f"shard_{f:04d}")
        os.makedirs(d)
        for i in range(f, files, folders):
            open(os.path.join(d, f"{i:08d}.jpg"), "wb").close()
        open(os.path.join(d, "index.txt"), "wb").close()


def best_of(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--folders", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from torchvision.datasets import ImageFolder

    from reidkit.data.datasets.unlabelled import load_paths

    with tempfile.TemporaryDirectory() as root:
        t = time.perf_counter()
        make_pool(root, args.files, args.folders)
        print(f"pool: {args.files} images in {args.folders} folders (+{args.folders} non-images), "
              f"created in {time.perf_counter() - t:.1f} s")

        ours_t, ours = best_of(lambda: load_paths(root), args.repeats)
        tv_t, tv = best_of(lambda: [p for p, _ in ImageFolder(root, loader=lambda p: p).samples],
                           args.repeats)
        glob_t, gl = best_of(lambda: sorted(glob.glob(os.path.join(root, "**", "*.jpg"), recursive=True)),
                             args.repeats)
        assert ours == tv == gl and len(ours) == args.files, "the three listings disagree"
        rows = [("reidkit load_paths (os.scandir)", ours_t), ("torchvision ImageFolder", tv_t),
                ("glob **/*.jpg + sorted", glob_t)]
        print(f"{'method':36s} {'seconds':>8s} {'files/s':>12s}")
        for name, s in rows:
            print(f"{name:36s} {s:8.3f} {args.files / s:12,.0f}")
        print(f"speed-up vs ImageFolder: {tv_t / ours_t:.1f}x; vs glob: {glob_t / ours_t:.1f}x")
        print(f"extrapolated to LUPerson (4,180,243 files): reidkit {ours_t * 4180243 / args.files:.0f} s, "
              f"ImageFolder {tv_t * 4180243 / args.files:.0f} s")


if __name__ == "__main__":
    main()
