"""DINO pre-training throughput (images/s), model step and multi-crop augmentation.

Model step: one full DINO iteration (teacher on 2 globals, student on all views, loss, backward,
per-parameter clip, AdamW, EMA) on random tensors, so data loading is not measured. Peer in the
same run: one supervised fine-tuning step of the same backbone (one view per image, BNNeck + CE)
-- the ratio says how much more an image costs in pre-training than in fine-tuning.

Augmentation: our explicit-RNG multi-crop (``reidkit.data.multicrop``) per image on one core.
Peer: the same ops composed from torchvision transforms (``RandomApply``, ``ColorJitter``,
``GaussianBlur``, ``RandomSolarize``), the way the official DINO code builds them.

    uv run python bench/pretrain_speed.py                 # tiny CPU recipe + ViT-S 256x128
    uv run python bench/pretrain_speed.py --quick         # fewer iterations
    uv run python bench/pretrain_speed.py --device cuda --precision bf16 --batch 64   # on a GPU
    uv run python bench/pretrain_speed.py --coke-look-only --tiny-only --threads 1    # issue 15 rows alone

CoKe's online assignment (issue 15: < 10% of the step at batch 64, K = 3000) is timed alone, in wall
and CPU seconds; on a CPU its share is CPU s / CPU s, which a shared machine's load does not skew.
"""
from __future__ import annotations

import argparse
import os
import random
import time

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from reidkit.data.multicrop import MultiCrop, MultiCropConfig
from reidkit.losses.dino import DINOLoss
from reidkit.methods.optim import clip_gradients, dino_param_groups
from reidkit.methods.pretrain_dino import DINOModel, ema_update
from reidkit.models import build_model
from reidkit.models.dino_head import DINOHead

RECIPES = {
    # name: (preset, global (H, W), local (H, W), locals, head out_dim)
    "tiny CPU recipe (vit_tiny 128x64, 2+4 crops)": ("vit_tiny", (128, 64), (64, 32), 4, 4096),
    "paper ViT-S/16 256x128, 2+8 crops": ("vit_small", (256, 128), (128, 64), 8, 65536),
}


def make_dino_step(preset, gsize, n_local, out_dim, device, precision, compile_: bool = False):
    """One full DINO iteration as ``step(views)`` (views: 2 global + ``n_local`` local batches on ``device``)."""
    backbone = build_model(preset, img_size=gsize, drop_path_rate=0.1).backbone
    embed = backbone.embed_dim
    student = DINOModel(backbone, DINOHead(embed, out_dim))
    teacher = DINOModel(build_model(preset, img_size=gsize, drop_path_rate=0.0).backbone, DINOHead(embed, out_dim))
    teacher.load_state_dict(student.state_dict())
    student.to(device), teacher.to(device)
    for p in teacher.parameters():
        p.requires_grad = False
    loss_fn = DINOLoss(out_dim, 2 + n_local, epochs=1).to(device)
    opt = torch.optim.AdamW(dino_param_groups(student), lr=1e-4, fused=device.type == "cuda")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    s_fwd, t_fwd = (torch.compile(student), torch.compile(teacher)) if compile_ else (student, teacher)

    def step(views):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            with torch.no_grad():
                t_out = t_fwd(views[:2])
            loss = loss_fn(s_fwd(views), t_out, 0)
        opt.zero_grad(set_to_none=True)
        if scaler:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        clip_gradients(student, 3.0)
        (scaler.step(opt), scaler.update()) if scaler else opt.step()
        ema_update(teacher, student, 0.996)

    return step


def dino_step_speed(preset, gsize, lsize, n_local, out_dim, batch, iters, device, precision,
                    compile_: bool = False) -> float:
    step = make_dino_step(preset, gsize, n_local, out_dim, device, precision, compile_)
    views = [torch.randn(batch, 3, *gsize, device=device) for _ in range(2)]
    views += [torch.randn(batch, 3, *lsize, device=device) for _ in range(n_local)]
    return _time(lambda: step(views), batch, iters, device)


def supervised_step_speed(preset, gsize, batch, iters, device, precision) -> float:
    model = build_model(preset, num_classes=751, img_size=gsize).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    x = torch.randn(batch, 3, *gsize, device=device)
    y = torch.randint(0, 751, (batch,), device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits, _ = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _time(step, batch, iters, device)


def _time(step, batch, iters, device) -> float:
    step()  # warm-up (allocations, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - t0)


def torchvision_multicrop(cfg: MultiCropConfig):
    """The official DINO way: torchvision Compose pipelines (global 1, global 2, local)."""
    import torchvision.transforms as T

    flip_color = T.Compose([T.RandomHorizontalFlip(p=0.5),
                            T.RandomApply([T.ColorJitter(*cfg.color_jitter)], p=cfg.color_jitter_p),
                            T.RandomGrayscale(p=cfg.grayscale_p)])
    norm = T.Compose([T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])
    blur = lambda p: T.RandomApply([T.GaussianBlur(9, sigma=cfg.blur_radius)], p=p)  # noqa: E731
    bic = T.InterpolationMode.BICUBIC
    g1 = T.Compose([T.RandomResizedCrop(cfg.global_size, cfg.global_scale, interpolation=bic), flip_color,
                    blur(cfg.blur_p[0]), norm])
    g2 = T.Compose([T.RandomResizedCrop(cfg.global_size, cfg.global_scale, interpolation=bic), flip_color,
                    blur(cfg.blur_p[1]), T.RandomSolarize(128, p=cfg.solarize_p), norm])
    loc = T.Compose([T.RandomResizedCrop(cfg.local_size, cfg.local_scale, interpolation=bic), flip_color,
                     blur(cfg.blur_p[2]), norm])
    return lambda img: [g1(img), g2(img)] + [loc(img) for _ in range(cfg.local_crops_number)]


def augmentation_speed(cfg: MultiCropConfig, src_size, n) -> tuple[float, float]:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (*src_size, 3), dtype=np.uint8))
    ours, peer = MultiCrop(cfg), torchvision_multicrop(cfg)
    rng = random.Random(0)
    ours(img, rng), peer(img)
    t0 = time.perf_counter()
    for _ in range(n):
        ours(img, rng)
    t1 = time.perf_counter()
    for _ in range(n):
        peer(img)
    t2 = time.perf_counter()
    return n / (t1 - t0), n / (t2 - t1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--batch", type=int, default=0, help="images per step (default: 16 tiny / 8 ViT-S on CPU)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true")
    args, _ = ap.parse_known_args()  # --tiny-only is coke_look_speed's
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    console = Console()
    table = Table(title=f"DINO pre-training throughput on {device.type} "
                        f"({torch.get_num_threads()} threads, {args.precision})")
    for col in ("recipe", "batch", "DINO img/s", "supervised img/s (peer)", "DINO / supervised"):
        table.add_column(col, justify="right" if col != "recipe" else "left")
    for name, (preset, g, l, n_local, out_dim) in RECIPES.items():
        small = preset == "vit_tiny"
        batch = args.batch or (16 if small else 8) * (8 if device.type == "cuda" else 1)
        iters = (2 if args.quick else 5) if device.type == "cpu" and not small else (3 if args.quick else 10)
        dino = dino_step_speed(preset, g, l, n_local, out_dim, batch, iters, device, args.precision)
        sup = supervised_step_speed(preset, g, batch, iters, device, args.precision)
        table.add_row(name, str(batch), f"{dino:.1f}", f"{sup:.1f}", f"{dino / sup:.2f}")
    console.print(table)

    aug = Table(title="Multi-crop augmentation, one process (images/s; each image -> all its views)")
    for col in ("crops", "reidkit multicrop", "torchvision Compose (peer)", "ratio"):
        aug.add_column(col, justify="right" if col != "crops" else "left")
    n = 20 if args.quick else 60
    for name, cfg, src in (("2x128x64 + 4x64x32", MultiCropConfig((128, 64), (64, 32), local_crops_number=4), (128, 64)),
                           ("2x256x128 + 8x128x64", MultiCropConfig(), (256, 128))):
        ours, peer = augmentation_speed(cfg, src, n)
        aug.add_row(name, f"{ours:.1f}", f"{peer:.1f}", f"{ours / peer:.2f}")
    console.print(aug)


# ----------------------------------------------------------------------------------------------
# CoKe and LOOK (issue 15): step throughput beside DINO's, and CoKe's online assignment alone
# ----------------------------------------------------------------------------------------------
def _method_step(method, preset, gsize, batch, iters, device, precision, ks=(3000,), n=1_281_167, cpu=False):
    """img/s of one CoKe or LOOK step (forward, loss with its state update, backward, clip, AdamW)
    on random tensors, and for CoKe also the seconds of the online assignment alone per step:
    ``(img/s, assignment s)``; with ``cpu``: ``(img/s, CPU s per step, (assignment wall s, CPU s))``."""
    from reidkit.losses.coke import CoKeLoss, CoKeLossConfig
    from reidkit.losses.look import LOOKLoss, LOOKLossConfig
    from reidkit.methods.pretrain_coke import CoKeHead, CoKeProjection
    from reidkit.methods.pretrain_look import LOOKHead, LOOKProjection
    from reidkit.methods.pretrain_loop import PretrainNet

    reid = build_model(preset, img_size=gsize, drop_path_rate=0.1)
    if method == "coke":
        head, loss_fn = CoKeProjection(reid.feat_dim, CoKeHead()), CoKeLoss(n, 128, CoKeLossConfig(num_clusters=list(ks)))
    else:
        head, loss_fn = LOOKProjection(reid.feat_dim, LOOKHead()), LOOKLoss(n, 128, LOOKLossConfig())
        loss_fn.filled[:] = True  # a warm memory: every slot is a candidate neighbour
        loss_fn.memory.copy_(torch.nn.functional.normalize(torch.randn_like(loss_fn.memory), dim=1))
        loss_fn.memory_labels.random_(0, 1000)
    net = PretrainNet(reid, head).to(device).train()
    loss_fn.to(device)
    opt = torch.optim.AdamW(dino_param_groups(net), lr=1e-4)
    views = [torch.randn(batch, 3, *gsize, device=device)]
    labels = torch.randint(0, 1000, (batch,), device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    g = torch.Generator().manual_seed(0)

    def step():
        index = torch.randperm(n, generator=g)[:batch].to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            if method == "coke":
                proj, pred = net(views)
                loss = loss_fn(proj, index, pred)
            else:
                loss = loss_fn(net(views)[0], labels, index)
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        clip_gradients(net, 3.0)
        opt.step()

    c0 = time.process_time()
    speed = _time(step, batch, iters, device)
    step_cpu = (time.process_time() - c0) / (iters + 1)  # CPU s per step (warm-up included)
    assign = None
    if method == "coke":  # the assignment alone: stored targets, gather, assignment, duals, centres, labels
        z = torch.randn(1, batch, 128, device=device)
        reps = 50
        loss_fn.assign(z, torch.arange(batch, device=device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        for r in range(reps):
            loss_fn.assign(z, torch.arange(r * batch, (r + 1) * batch, device=device) % n)
        if device.type == "cuda":
            torch.cuda.synchronize()
        assign = ((time.perf_counter() - t0) / reps, (time.process_time() - c0) / reps)
    if cpu:
        return speed, step_cpu, assign
    return speed, None if assign is None else assign[0]


def coke_look_speed(argv=None) -> None:
    """CoKe and LOOK rows: img/s per method next to a supervised step of the same backbone (peer),
    and CoKe's online assignment time as a share of its step (issue 15: < 10% at batch 64, K = 3000)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tiny-only", action="store_true", help="only the tiny recipe (ViT-S on CPU takes minutes)")
    args, _ = ap.parse_known_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = os.getloadavg()[0]
    table = Table(title=f"CoKe / LOOK pre-training throughput on {device.type} ({torch.get_num_threads()} threads, "
                        f"{args.precision}; 1 view, memory/labels for 1.28M images; load average {load:.1f} on "
                        f"{os.cpu_count()} cores)")
    for col in ("recipe", "batch", "CoKe K=3000 img/s", "LOOK k=200 img/s", "supervised img/s (peer)",
                "CoKe step CPU s", "assignment ms wall / CPU", "assignment / CoKe step (CPU s)"):
        table.add_column(col, justify="right" if col != "recipe" else "left")
    for name, (preset, g, _, _, _) in RECIPES.items():
        small = preset == "vit_tiny"
        if args.tiny_only and not small:
            continue
        batch = args.batch or (64 if device.type == "cuda" or small else 16)
        iters = (2 if args.quick else 4) if device.type == "cpu" and not small else (3 if args.quick else 10)
        coke, coke_cpu, (assign_wall, assign_cpu) = _method_step("coke", preset, g, batch, iters, device,
                                                                 args.precision, cpu=True)
        look, _ = _method_step("look", preset, g, batch, iters, device, args.precision)
        sup = supervised_step_speed(preset, g, batch, iters, device, args.precision)
        # on a GPU the CPU seconds of a step are not its cost: the share is then wall / wall
        share = assign_cpu / coke_cpu if device.type == "cpu" else assign_wall / (batch / coke)
        table.add_row(name, str(batch), f"{coke:.1f}", f"{look:.1f}", f"{sup:.1f}", f"{coke_cpu:.2f}",
                      f"{assign_wall * 1e3:.1f} / {assign_cpu * 1e3:.1f}", f"{100 * share:.1f}%")
    Console(width=max(160, Console().width)).print(table)


if __name__ == "__main__":
    import sys

    if "--coke-look-only" in sys.argv:  # the issue-15 rows alone (no DINO rows)
        coke_look_speed([a for a in sys.argv[1:] if a != "--coke-look-only"])
    else:
        main()
        coke_look_speed()
