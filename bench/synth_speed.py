"""Speed of the synthetic benchmark generator and the colour-histogram baseline, with peers.

Measured in the same run on the same images:
  * synth:      render + JPEG-encode + write, one process (images/s), and with --workers;
  * peer:       PIL decode + resize of the written files (the floor of any image loader);
  * baseline:   colour-histogram features of the written files;
  * model peer: a vit_tiny_ics (192 wide, 6 deep, 128x64) forward pass, batch 64 (images/s).
The ratios say whether the generator or the baseline could ever be a pipeline's bottleneck.

    uv run python bench/synth_speed.py [--ids 60] [--workers 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from reidkit.data.synth import SynthConfig, generate
from reidkit.evaluation.baselines import color_histogram_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", type=int, default=60, help="train and test ids (one city)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-model", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SynthConfig(domains=1, train_ids=args.ids, test_ids=args.ids, pool_size=0, distractors=20, junk=10)
        r1 = generate(cfg, Path(tmp) / "one", progress=False)
        rows.append(("synth render+encode+write, 1 process", r1.num_images, r1.images_per_second))
        if args.workers > 1:
            cfg.workers = args.workers
            rw = generate(cfg, Path(tmp) / "many", progress=False)
            rows.append((f"synth, {args.workers} processes", rw.num_images, rw.images_per_second))
        files = sorted(str(p) for p in (Path(tmp) / "one").rglob("*.jpg"))
        t = time.perf_counter()
        for f in files:
            with Image.open(f) as im:
                im.convert("RGB").resize((64, 128), Image.BILINEAR)
        rows.append(("peer: PIL decode + resize", len(files), len(files) / (time.perf_counter() - t)))
        t = time.perf_counter()
        color_histogram_features(files, progress=False)
        rows.append(("colour-histogram baseline (decode included)", len(files), len(files) / (time.perf_counter() - t)))
    if not args.skip_model:
        from reidkit.models import build_model

        model = build_model("vit_tiny_ics").eval()
        x = torch.randn(64, 3, 128, 64)
        with torch.inference_mode():
            model(x)
            t = time.perf_counter()
            for _ in range(3):
                model(x)
        rows.append(("model peer: vit_tiny_ics forward, batch 64", 192, 192 / (time.perf_counter() - t)))
    table = Table(title="synthetic generator and baseline speed (1 torch thread)")
    for c in ("what", "images", "images/s", "x PIL decode"):
        table.add_column(c, justify="left" if c == "what" else "right")
    peer = next(v for n, _, v in rows if n.startswith("peer"))
    for name, n, v in rows:
        table.add_row(name, str(n), f"{v:.0f}", f"{v / peer:.2f}")
    Console().print(table)
    synth1 = rows[0][2]
    print(f"generation is {synth1 / peer:.2f}x PIL's decode speed on one process"
          + (f" and {synth1 / rows[-1][2]:.1f}x a vit_tiny_ics forward pass" if not args.skip_model else ""))


if __name__ == "__main__":
    main()
