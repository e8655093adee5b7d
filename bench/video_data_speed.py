"""Speed of the tracklet data tools, each against a peer measured in the same run:

  * synth tracklets (render + encode + write, frames/s) against the image benchmark's generator (images/s);
  * MOT -> tracklets (decode each frame once, cut every box, write; crops/s) against the naive way, one
    decode per box, and against the floor: decoding each frame once and cutting nothing;
  * the MARS reader (info files checked against the folders; frames/s) on a MARS-shaped tree of empty
    files (``--mars-scale`` of MARS's 1.19M frames) against a bare ``os.scandir`` listing of the same tree.

    uv run python bench/video_data_speed.py [--mars-scale 0.05] [--frames 120]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from reidkit.data.datasets import load_dataset
from reidkit.data.datasets.mot import mot_to_tracklets
from reidkit.data.synth import SynthConfig, TrackletSynthConfig, generate, generate_tracklets

MARS_TRACKS, MARS_FRAMES = 8298 + 11310, 1_191_003   # tracklets (train + test) and frames of MARS


def bench_synth(tmp: Path, rows: list) -> None:
    img = generate(SynthConfig(domains=1, train_ids=30, test_ids=30, pool_size=0, distractors=10, junk=5),
                   tmp / "img", progress=False)
    trk = generate_tracklets(TrackletSynthConfig(train_ids=8, test_ids=8, distractors=2, cameras=3), tmp / "trk",
                             progress=False)
    rows.append(("synth tracklets: render + encode + write", trk.num_frames, "frames", trk.frames_per_second,
                 trk.frames_per_second / img.images_per_second))
    rows.append(("  peer: image benchmark generator", img.num_images, "images", img.images_per_second, None))


def bench_mot(tmp: Path, n_frames: int, rows: list) -> None:
    rng = np.random.default_rng(0)
    seq = tmp / "seq"
    (seq / "img1").mkdir(parents=True)
    (seq / "gt").mkdir()
    for f in range(1, n_frames + 1):
        Image.fromarray(rng.integers(0, 256, (540, 960, 3), dtype=np.uint8)).save(seq / "img1" / f"{f:06d}.jpg",
                                                                                   quality=90)
    lines = []
    for tid in range(1, 13):  # 12 people walking across, partly out of the image at the borders
        x0, speed = float(rng.uniform(-40, 900)), float(rng.uniform(-4, 4))
        for f in range(1, n_frames + 1):
            lines.append(f"{f},{tid},{x0 + speed * f:.1f},{200 + tid * 10},60,160,1,1,1.0")
    (seq / "gt" / "gt.txt").write_text("\n".join(lines) + "\n")
    res = mot_to_tracklets(seq, tmp / "mot_out", workers=1)
    ours = res.crops / res.seconds
    t = time.perf_counter()
    for f in range(1, n_frames + 1):
        with Image.open(seq / "img1" / f"{f:06d}.jpg") as im:
            im.convert("RGB")
    floor = n_frames / (time.perf_counter() - t)
    naive_dir = tmp / "naive"
    naive_dir.mkdir()
    t = time.perf_counter()
    for i, line in enumerate(lines):
        f, _, x, y, w, h = (float(v) for v in line.split(",")[:6])
        with Image.open(seq / "img1" / f"{int(f):06d}.jpg") as im:
            W, H = im.size
            box = (max(0, round(x)), max(0, round(y)), min(W, round(x + w)), min(H, round(y + h)))
            if box[2] > box[0] and box[3] > box[1]:
                im.convert("RGB").crop(box).save(naive_dir / f"{i}.jpg", quality=95)
    naive = len(lines) / (time.perf_counter() - t)
    rows.append((f"MOT -> tracklets ({n_frames} frames 960x540, 12 tracks)", res.crops, "crops", ours, ours / naive))
    rows.append(("  peer: naive, one decode per box", len(lines), "boxes", naive, None))
    rows.append(("  floor: decode each frame once, cut nothing", n_frames, "frames", floor, None))


def bench_mars(tmp: Path, scale: float, rows: list) -> None:
    from scipy.io import savemat

    base = tmp / "mars"
    (base / "info").mkdir(parents=True)
    n_tracks = max(12, round(MARS_TRACKS * scale))
    per_track = MARS_FRAMES / MARS_TRACKS
    rng = np.random.default_rng(0)
    for split, share in (("train", 8298 / MARS_TRACKS), ("test", 11310 / MARS_TRACKS)):
        names, table = [], []
        for t in range(max(6, round(n_tracks * share))):
            pid, cam, n = 1 + t // 8, 1 + t % 6, max(2, int(rng.poisson(per_track)))
            start = len(names) + 1
            folder = base / f"bbox_{split}" / f"{pid:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for f in range(1, n + 1):
                name = f"{pid:04d}C{cam}T{t:04d}F{f:03d}.jpg"
                names.append(name)
                os.close(os.open(folder / name, os.O_CREAT | os.O_WRONLY))
            table.append([start, len(names), pid, cam])
        (base / "info" / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        savemat(base / "info" / f"tracks_{split}_info.mat", {f"track_{split}_info": np.asarray(table, float)})
    savemat(base / "info" / "query_IDX.mat", {"query_IDX": np.arange(1, len(table) + 1, 6, dtype=float)[None]})
    load_dataset("mars", base)  # warm the file-system cache for both timings
    t = time.perf_counter()
    ds = load_dataset("mars", base)
    ours = time.perf_counter() - t
    n = sum(len(x.frames) for s in (ds.train, ds.query, ds.gallery) for x in s)
    t = time.perf_counter()
    listed = 0
    for split in ("bbox_train", "bbox_test"):
        for d in os.scandir(base / split):
            listed += sum(1 for _ in os.scandir(d.path))
    floor = time.perf_counter() - t
    rows.append((f"MARS reader ({scale:g} x MARS: {n} frames)", n, "frames", n / ours, (n / ours) / (listed / floor)))
    rows.append(("  peer: bare os.scandir of the same folders", listed, "files", listed / floor, None))
    rows.append((f"  -> full MARS (1.19M frames) estimate: {MARS_FRAMES / (n / ours):.0f} s", None, "", None, None))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mars-scale", type=float, default=0.05)
    ap.add_argument("--frames", type=int, default=120, help="MOT sequence length")
    args = ap.parse_args()
    rows: list = []
    with tempfile.TemporaryDirectory() as tmp:
        bench_synth(Path(tmp), rows)
        bench_mot(Path(tmp), args.frames, rows)
        bench_mars(Path(tmp), args.mars_scale, rows)
    table = Table(title="tracklet data tools (ratio: our speed / the peer's, measured in the same run)")
    for col in ("what", "items", "", "per second", "ratio"):
        table.add_column(col, justify="left" if col in ("what", "") else "right")
    for what, n, unit, rate, ratio in rows:
        table.add_row(what, "" if n is None else str(n), unit, "" if rate is None else f"{rate:,.0f}",
                      "" if ratio is None else f"{ratio:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
