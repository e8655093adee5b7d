"""Feature-extraction speed of the ReID ViTs against plain timm ViT-S, measured in the same run.

    uv run python bench/extract_speed.py                  # batch 64, 256x128, 2 threads (issue setting)
    uv run python bench/extract_speed.py --batch-size 16 --rounds 2   # quicker
    uv run python bench/extract_speed.py --device cuda

Configurations (inference mode, random 256x128 inputs, forward only):
  * timm ViT-S/16 (the peer): ``timm.create_model('vit_small_patch16_224', img_size=(256, 128))``,
    fp32 and bf16 autocast;
  * reidkit ``vit_small`` (patchify) and ``vit_small_ics``: fp32, and bf16 autocast after
    ``prepare_for_inference`` (stem BatchNorms folded, channels-last convolutions, weights cast
    once); for ICS also fp32 "prepared" (folded stem, channels-last, fp32 weights);
  * k-NN attention: ``vit_small`` with k = 50% of the tokens in every block, fp32 and bf16.
Configurations run round-robin (``--rounds`` times, best time kept) so a loaded machine slows all
of them alike. Also printed: the cosine between bf16 and fp32 features (min over the batch), and
the ratio to the official TransReID code's figures quoted in issue 3 (16.4 img/s patchify, 11.8
img/s ICS, fp32 on a 2-core machine; not measured in this run).
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import time

import torch
import torch.nn.functional as F

OFFICIAL_FP32 = {"patchify": 16.4, "ics": 11.8}   # issue 3, official TransReID model code, 2 cores


def image_batch(batch: int, size, seed: int = 0) -> torch.Tensor:
    """Smooth random images, normalised like the test transform ((x - 0.5) / 0.5)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, size[0] // 8, size[1] // 8, generator=g)
    img = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
    return ((img - 0.5) / 0.5).contiguous()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--knn", type=float, default=0.5, help="k-NN ratio to measure")
    args = ap.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    import timm
    from rich.console import Console
    from rich.table import Table

    from reidkit.models import build_model
    from reidkit.models.inference import prepare_for_inference

    dev = torch.device(args.device)
    size = (256, 128)
    x = image_batch(args.batch_size, size).to(dev)

    def peer():
        return timm.create_model("vit_small_patch16_224", pretrained=False, img_size=size, num_classes=0)

    torch.manual_seed(0)
    fp32 = {
        "timm ViT-S/16": peer().eval().to(dev),
        "reidkit vit_small": build_model("vit_small").eval().to(dev),
        "reidkit vit_small_ics": build_model("vit_small_ics").eval().to(dev),
        f"reidkit vit_small knn {args.knn:g}": build_model("vit_small", knn_k=args.knn).eval().to(dev),
    }
    configs = []   # (name, precision, model, stem)
    for name, m in fp32.items():
        stem = "ics" if "ics" in name else "patchify"
        configs.append((name, "fp32", m, stem))
        if stem == "ics":
            configs.append((name, "fp32 prepared", prepare_for_inference(copy.deepcopy(m)), stem))
        if name.startswith("timm"):
            configs.append((name, "bf16", m, stem))   # plain autocast, as a timm user would
        else:
            configs.append((name, "bf16", prepare_for_inference(copy.deepcopy(m), "bf16"), stem))

    def run(model, precision):
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16,
                                                    enabled=precision.startswith("bf16")):
            return model(x).float()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    outputs, best = {}, {}
    for c in configs:   # warm-up, and the features for the cosine check
        outputs[c[:2]] = run(c[2], c[1])
    for _ in range(args.rounds):
        for name, prec, model, _ in configs:
            sync()
            t = time.perf_counter()
            run(model, prec)
            sync()
            best[(name, prec)] = min(best.get((name, prec), 1e9), time.perf_counter() - t)

    ips = {k: args.batch_size / v for k, v in best.items()}
    peer_fp32 = ips[("timm ViT-S/16", "fp32")]
    table = Table(title=f"extraction speed, batch {args.batch_size}, 256x128, {args.device}"
                        + (f", {args.threads} threads" if dev.type == "cpu" else ""))
    for col in ("model", "precision", "img/s", "vs timm fp32", "vs official fp32", "cos(vs fp32)"):
        table.add_column(col, justify="left" if col in ("model", "precision") else "right")
    for name, prec, _, stem in configs:
        cos = "-"
        if prec != "fp32":
            cos = f"{F.cosine_similarity(outputs[(name, prec)], outputs[(name, 'fp32')]).min().item():.5f}"
        official = "-" if name.startswith("timm") or "knn" in name else \
            f"{ips[(name, prec)] / OFFICIAL_FP32[stem]:.2f}x"
        table.add_row(name, prec, f"{ips[(name, prec)]:.1f}", f"{ips[(name, prec)] / peer_fp32:.2f}x",
                      official if dev.type == "cpu" else "-", cos)
    console = Console(width=120)
    console.print(table)
    knn_name = f"reidkit vit_small knn {args.knn:g}"
    for prec in ("fp32", "bf16"):
        cost = best[(knn_name, prec)] / best[("reidkit vit_small", prec)]
        console.print(f"k-NN attention (k = {args.knn:g} of tokens, every block, {prec}): "
                      f"{cost:.2f}x the time of dense SDPA attention")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    console.print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                  f"load average {load[0]:.1f}, torch {torch.__version__}, timm {timm.__version__}"
                  + (f", {torch.cuda.get_device_name()}" if dev.type == "cuda" else ""))


if __name__ == "__main__":
    main()
