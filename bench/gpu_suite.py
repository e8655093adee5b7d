"""Every row of issue 12's table in one process, each with its peer measured in the same run.

    uv run python bench/gpu_suite.py                        # one CUDA GPU, under 6 minutes on an H200
    uv run python bench/gpu_suite.py --no-compile           # skip the torch.compile rows (faster)
    uv run python bench/gpu_suite.py --device cpu --tiny    # smoke test: micro models, a few images

Rows (ViT-S/16 256x128 unless --tiny; img/s, higher is better; "x peer" = ours / peer):
  fine-tune  train step of reidkit vit_small (CE + triplet, fused AdamW, bf16) eager and compiled at
             batch 64 and 256, vs the timm ViT-S train step (peer); end to end with the memory-cached
             PK loader: CPU per-sample augmentation (peer) vs device augmentation, + compute share
  loader     PIL decode in W processes (peer) vs nvjpeg batched decode; device flip+pad+crop+erasing+
             normalise on a batch of 256
  DINO       model step (2x256x128 + 8x128x64, batch 64) eager / compiled; device multi-crop vs PIL
             multi-crop in W processes; end to end: device multi-crop + step
  extract    model alone bf16 (batch 256 eager, 1024 compiled); `extract_features` on JPEG files,
             device decode vs PIL decode (W workers)
  k-NN attn  vit_small with k = 50% in every block (fused path, and the reference) vs dense SDPA
  rerank / cluster  k-reciprocal (Market- and MSMT17-sized), GCR and QE (MSMT17-sized), and USL
             clustering of 100,000 features, from bench/rerank_speed.py and bench/cluster_speed.py
Rows that fail print their error and the suite goes on; a row not started before --budget seconds
is skipped. Figures are throughput on synthetic JPEGs / random tensors; no accuracy is measured.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


class Suite:
    def __init__(self, args):
        self.args, self.rows, self.t0 = args, [], time.perf_counter()
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        t = args.tiny
        self.preset = "vit_micro" if t else "vit_small"
        self.size = (64, 32) if t else (256, 128)
        self.local = (32, 16) if t else (128, 64)
        self.n_local = 2 if t else 8
        self.out_dim = 256 if t else 65536
        self.batch = 4 if t else 64
        self.big = 8 if t else 256
        self.huge = 8 if t else 1024
        self.iters = 1 if t else 20
        self.warmup = 1 if t else 2
        self.workers = args.workers
        self.dtype = torch.bfloat16 if (self.cuda and torch.cuda.is_bf16_supported()) or args.device == "cpu" else None
        self.compile = not args.no_compile and not t
        self.tmp = Path(tempfile.mkdtemp(prefix="reidkit_gpu_suite_"))

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def rate(self, fn, n_img, iters=None, warmup=None) -> float:
        """Images/s of ``fn()`` processing ``n_img`` images, after ``warmup`` calls."""
        for _ in range(self.warmup if warmup is None else warmup):
            fn()
        self.sync()
        iters = iters or self.iters
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        self.sync()
        return n_img * iters / (time.perf_counter() - t)

    def row(self, stage, what, ours, peer_name="", peer=None, note=""):
        self.rows.append((stage, what, ours, peer_name, peer, note))
        ratio = f"{ours / peer:.2f}x" if peer else ""
        print(f"  {stage:10s} {what:52s} {ours:12,.0f} {peer_name:28s} "
              f"{'' if peer is None else f'{peer:10,.0f}'} {ratio} {note}", flush=True)

    def run(self, name, fn):
        if time.perf_counter() - self.t0 > self.args.budget:
            self.rows.append((name, "skipped: over the time budget", None, "", None, ""))
            print(f"  {name}: skipped (over --budget {self.args.budget:.0f} s)", flush=True)
            return
        t = time.perf_counter()
        try:
            fn()
        except Exception as e:  # one broken row must not cost the whole lease
            self.rows.append((name, f"error: {type(e).__name__}: {str(e)[:120]}", None, "", None, ""))
            print(f"  {name}: ERROR {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(limit=3)
        print(f"  ({name}: {time.perf_counter() - t:.1f} s; total {time.perf_counter() - self.t0:.1f} s)",
              flush=True)

    # ------------------------------------------------------------------ data
    def jpegs(self, n: int) -> list[str]:
        """``n`` person-sized JPEG files (a few distinct images written, the rest byte copies)."""
        from train_speed import write_images

        d = self.tmp / f"jpeg_{n}"
        if d.exists():
            return sorted(str(p) for p in d.rglob("*.jpg"))
        base = write_images(d / "base", ids=8, per_id=4, size=self.size)
        paths = [p for p, _ in base]
        for i in range(len(paths), n):
            src = base[i % len(base)][0]
            dst = d / f"{i % 64:04d}" / f"{i % 64:04d}_c1s1_{i:06d}_00.jpg"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(Path(src).read_bytes())
            paths.append(str(dst))
        return paths[:n]

    # ------------------------------------------------------------------ rows
    def train_steps(self):
        from timm.models.vision_transformer import VisionTransformer

        from reidkit.losses.triplet import TripletLoss
        from reidkit.models import build_model
        from reidkit.models.presets import PRESETS

        triplet = TripletLoss()
        spec = PRESETS[self.preset]   # the peer: timm's ViT of the same width and depth (ViT-S/16 for vit_small)

        def step_fn(model, batch, ours, fused=True, channels_last=False):
            x = torch.randn(batch, 3, *self.size, device=self.device)
            if channels_last:
                model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.arange(batch, device=self.device) // 4 % 751
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused, foreach=None if fused else True)
            fwd = torch.compile(model) if getattr(model, "_compile", False) else model

            def step():
                with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                    out = fwd(x)
                    if ours:
                        logits, feat = out
                        loss = F.cross_entropy(logits.float(), y) + triplet(feat.float(), y)
                    else:
                        loss = F.cross_entropy(out.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            return step

        for batch in (self.batch, self.big):
            for comp in ((False, True) if self.compile else (False,)):
                peer = VisionTransformer(img_size=self.size, patch_size=16, embed_dim=spec.embed_dim, depth=spec.depth,
                                         num_heads=spec.num_heads, num_classes=751).to(self.device).train()
                peer._compile = comp
                ours = build_model(self.preset, num_classes=751, img_size=self.size).to(self.device).train()
                ours._compile = comp
                p = self.rate(step_fn(peer, batch, False), batch, warmup=self.warmup + 1)
                o = self.rate(step_fn(ours, batch, True), batch, warmup=self.warmup + 1)
                self.row("fine-tune", f"train step {self.preset} b{batch} {'compiled' if comp else 'eager'}", o,
                         "timm ViT train step", p)
                del peer, ours
        b = self.batch   # the habits, measured: fused AdamW, and channels-last for the ICS conv stem
        ours = build_model(self.preset, num_classes=751, img_size=self.size).to(self.device).train()
        self.row("fine-tune", f"train step {self.preset} b{b}, fused AdamW", self.rate(step_fn(ours, b, True), b),
                 "foreach AdamW", self.rate(step_fn(ours, b, True, fused=False), b))
        ics = build_model(self.preset + "_ics", num_classes=751, img_size=self.size).to(self.device).train()
        plain = self.rate(step_fn(ics, b, True), b)
        self.row("fine-tune", f"train step {self.preset}_ics b{b}, channels-last",
                 self.rate(step_fn(ics, b, True, channels_last=True), b), "contiguous (NCHW)", plain)

    def train_end_to_end(self):
        from train_speed import run_steps

        from reidkit.data.device_augment import build_device_train_loader
        from reidkit.data.records import Record
        from reidkit.data.train_loader import build_train_loader
        from reidkit.data.transforms import build_train_transform
        from reidkit.losses.triplet import TripletLoss
        from reidkit.models import build_model

        paths = self.jpegs(512 if not self.args.tiny else 32)
        records = [Record(p, i // 4, 0) for i, p in enumerate(paths)]
        tf = build_train_transform(self.size)
        kw = dict(batch_size=self.batch, num_instances=4, seed=0, size=self.size, num_workers=self.workers,
                  cache="memory", pin_memory=self.cuda, progress=False)
        model = build_model(self.preset, num_classes=len(paths) // 4, img_size=self.size).to(self.device).train()
        fwd = torch.compile(model) if self.compile else model
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=self.cuda)
        cpu_loader, _, _ = build_train_loader(records, tf, **kw)
        dev_loader, _, _, aug = build_device_train_loader(records, tf, **kw)
        args = (fwd, (F.cross_entropy, TripletLoss()), opt, self.device, self.iters * 2, self.warmup + 1)
        p = run_steps(cpu_loader, *args, None, self.dtype)
        o = run_steps(dev_loader, *args, aug.to(self.device), self.dtype)
        (p, p_share), (o, o_share) = ((r["images_per_s"], r["compute_share"]) for r in (p, o))
        c = " compiled" if self.compile else ""
        self.row("fine-tune", f"end to end b{self.batch}{c}, device augment, {self.workers} workers", o,
                 "CPU augment (same loader)", p, f"compute {o_share:.0%} vs {p_share:.0%} (target >= 95%)")

    def loader(self):
        from multiprocessing import get_context

        from reidkit.data.device_augment import AugmentRecipe, DeviceAugment, UInt8Batch, decode_images, draw_params
        from reidkit.data.transforms import build_train_transform

        paths = self.jpegs(self.big * 2)
        with get_context("fork").Pool(self.workers) as pool:
            pool.map(_pil_decode, paths[:self.workers])
            t = time.perf_counter()
            pool.map(_pil_decode, paths, chunksize=16)
            pil = len(paths) / (time.perf_counter() - t)
        data = [torch.frombuffer(bytearray(Path(p).read_bytes()), dtype=torch.uint8) for p in paths[:self.big]]
        nv = self.rate(lambda: decode_images(data, self.device), len(data), iters=max(2, self.iters // 2))
        self.row("loader", f"decode b{self.big} ({'nvjpeg' if self.cuda else 'torchvision CPU'})", nv,
                 f"PIL decode, {self.workers} processes", pil)
        recipe = AugmentRecipe.from_transform(build_train_transform(self.size))
        draws = [draw_params(recipe) for _ in range(self.big)]
        ub = UInt8Batch(images=torch.randint(0, 256, (self.big, *self.size, 3), dtype=torch.uint8),
                        flip=torch.tensor([d[0] for d in draws]), top=torch.tensor([d[1] for d in draws]),
                        left=torch.tensor([d[2] for d in draws]), erase=torch.tensor([d[3] for d in draws]),
                        noise=torch.cat([d[4] for d in draws])).to(self.device)
        aug = DeviceAugment(recipe).to(self.device)
        self.row("loader", f"device flip+pad+crop+erase+normalise b{self.big}",
                 self.rate(lambda: aug(ub), self.big), "", None)

    def dino(self):
        import pretrain_speed as ps
        from torch.utils.data import DataLoader

        from reidkit.data.device_multicrop import DeviceMultiCrop, MultiCropDraws
        from reidkit.data.multicrop import MultiCrop, MultiCropConfig

        cfg = MultiCropConfig(global_size=self.size, local_size=self.local, local_crops_number=self.n_local)
        b = self.batch
        for comp in ((False, True) if self.compile else (False,)):
            step = ps.make_dino_step(self.preset, self.size, self.n_local, self.out_dim, self.device,
                                     "bf16" if self.dtype is not None else "fp32", comp)
            views = [torch.randn(b, 3, *self.size, device=self.device) for _ in range(2)]
            views += [torch.randn(b, 3, *self.local, device=self.device) for _ in range(self.n_local)]
            model = self.rate(lambda: step(views), b, iters=max(2, self.iters // 2))
            self.row("DINO", f"model step b{b} {'compiled' if comp else 'eager'}", model, "", None,
                     "official DINO ViT-S/16 ~106 img/s per GPU")
        # augmentation: PIL multi-crop in W processes (peer) vs device multi-crop
        paths = self.jpegs(256 if not self.args.tiny else 32)
        pil_ds = _Pool(paths, MultiCrop(cfg))
        dev_ds = _Pool(paths, MultiCropDraws(cfg))
        kw = dict(batch_size=b, num_workers=self.workers, shuffle=False, drop_last=True, pin_memory=self.cuda,
                  persistent_workers=self.workers > 0, prefetch_factor=4 if self.workers else None)
        pil_loader, dev_loader = DataLoader(pil_ds, **kw), DataLoader(dev_ds, **kw)
        aug = DeviceMultiCrop(cfg).to(self.device)
        pil = _loader_rate(pil_loader, lambda batch: batch, self.sync, self.iters)

        def dev_views(batch):
            (canv, params), _ = batch
            return aug(canv.to(self.device, non_blocking=True), params.to(self.device, non_blocking=True))

        dev = _loader_rate(dev_loader, dev_views, self.sync, self.iters)
        self.row("DINO", "multi-crop: device (workers read + draw)", dev,
                 f"PIL multi-crop, {self.workers} workers", pil)
        e2e = _loader_rate(dev_loader, lambda batch: step(dev_views(batch)), self.sync, self.iters)
        self.row("DINO", f"end to end b{b}{' compiled' if self.compile else ''}, device multi-crop", e2e, "", None,
                 "target >= 700 (1,000 compiled)")

    def extract(self):
        from reidkit.data.transforms import build_test_transform
        from reidkit.evaluation.extract import extract_features
        from reidkit.models import build_model
        from reidkit.models.inference import prepare_for_inference

        model = prepare_for_inference(build_model(self.preset, img_size=self.size).to(self.device),
                                      "bf16" if self.dtype is not None else None)
        x = torch.randn(self.big, 3, *self.size, device=self.device)
        with torch.inference_mode():
            def fwd(m, inp):
                with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                    return m(inp)
            alone = self.rate(lambda: fwd(model, x), self.big)
            self.row("extract", f"model alone b{self.big} eager", alone, "", None)
            if self.compile:
                cm = torch.compile(model)
                xx = torch.randn(self.huge, 3, *self.size, device=self.device)
                self.row("extract", f"model alone b{self.huge} compiled", self.rate(lambda: fwd(cm, xx), self.huge),
                         "eager b" + str(self.big), alone)
        n = 16384 if not self.args.tiny else 32
        folder_paths = self.jpegs(n)
        tf = build_test_transform(self.size)
        kw = dict(batch_size=self.huge, device=self.device, num_workers=self.workers,
                  amp_dtype=self.dtype, progress=False)
        extract_features(model, folder_paths[:self.huge], tf, decode="device", **kw)   # warm-up
        t = time.perf_counter()
        fs = extract_features(model, folder_paths, tf, decode="device", compile=self.compile, **kw)
        dev = len(fs) / (time.perf_counter() - t)
        m = min(len(folder_paths), 4096)
        t = time.perf_counter()
        extract_features(model, folder_paths[:m], tf, decode="pil", **kw)
        pil = m / (time.perf_counter() - t)
        self.row("extract", f"folder of {len(fs)} JPEGs, device decode, b{self.huge}", dev,
                 f"PIL decode, {self.workers} workers", pil, "target >= 15,000")

    def knn(self):
        from reidkit.models import build_model
        from reidkit.models.inference import prepare_for_inference
        from reidkit.models.knn_attention import KNNAttention

        x = torch.randn(self.big, 3, *self.size, device=self.device)
        amp = "bf16" if self.dtype is not None else None
        dense = prepare_for_inference(build_model(self.preset, img_size=self.size).to(self.device), amp)
        knn = prepare_for_inference(build_model(self.preset, img_size=self.size, knn_k=0.5).to(self.device), amp)

        def fwd(m):
            with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype,
                                                        enabled=self.dtype is not None):
                return m(x)
        d = self.rate(lambda: fwd(dense), self.big)
        k = self.rate(lambda: fwd(knn), self.big)
        self.row("k-NN attn", f"k = 50% every block, fused, b{self.big}", k, "dense SDPA", d,
                 f"time {d / k:.2f}x dense (target <= 1.3x)")
        for mod in knn.modules():
            if isinstance(mod, KNNAttention):
                mod.reference = True
        r = self.rate(lambda: fwd(knn), self.big)
        self.row("k-NN attn", f"k = 50% every block, reference, b{self.big}", r, "dense SDPA", d,
                 f"time {d / r:.2f}x dense")

    def helpers(self):
        """Re-ranking and USL clustering rows from the benches that own them (``run_gpu_rows``): the rate
        column is features/s (N / seconds); targets of issue 14 in the note."""
        import cluster_speed
        import rerank_speed

        targets = {"kreciprocal market": 1.0, "kreciprocal msmt": 10.0, "gcr msmt": 10.0}
        if self.args.tiny:
            rr = rerank_speed.run_gpu_rows(str(self.device), cases=(("market", "kreciprocal"),), scale=0.05)
            cl = cluster_speed.run_gpu_rows(str(self.device), sizes=(2_000,), dim=64)
        else:
            rr = rerank_speed.run_gpu_rows(str(self.device))
            cl = cluster_speed.run_gpu_rows(str(self.device), sizes=(100_000,))
        for r in rr:
            goal = targets.get(r["case"])
            self.row("rerank", f"{r['case']} N={r['N']:,}", r["N"] / r["seconds"], "", None,
                     f"{r['seconds']:.2f} s, device peak {r['device_peak_gib']:.2f} GiB"
                     + (f" (target <= {goal:.0f} s)" if goal else ""))
        for r in cl:
            self.row("cluster", r["case"], r["N"] / r["seconds"], "", None,
                     f"{r['seconds']:.2f} s (graph {r['graph_seconds']:.2f} + DBSCAN {r['dbscan_seconds']:.2f}), "
                     f"{r['clusters']} clusters (target <= 5 s at 100k)")


class _Pool(torch.utils.data.Dataset):
    """Images -> multi-crop (``MultiCrop`` views, or ``MultiCropDraws`` canvas + draws), seeded per index."""

    def __init__(self, paths, fn):
        self.paths, self.fn = paths, fn

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from reidkit.data.images import load_rgb

        return self.fn(load_rgb(self.paths[i]), random.Random(i)), i


def _pil_decode(path: str) -> int:
    from reidkit.data.images import load_rgb

    return int(np.asarray(load_rgb(path)).shape[0])


def _loader_rate(loader, consume, sync, batches: int) -> float:
    it, n = iter(loader), 0
    consume(next(it))
    sync()
    t = time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        consume(batch)
        n += len(batch[-1])
    sync()
    return n / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> Suite:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="micro models and a few images (smoke test)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 2))
    ap.add_argument("--budget", type=float, default=330.0, help="seconds after which rows are skipped")
    ap.add_argument("--only", default="", help="comma list of rows: train,e2e,loader,dino,extract,knn,helpers")
    args = ap.parse_args(argv)
    if args.tiny:
        args.workers = min(args.workers, 1)
    suite = Suite(args)
    dev = torch.cuda.get_device_name() if suite.cuda else platform.processor() or platform.machine()
    print(f"reidkit GPU suite: {dev}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{'bf16' if suite.dtype is not None else 'fp32'}, compile {'on' if suite.compile else 'off'}, "
          f"workers {args.workers}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    rows = {"train": suite.train_steps, "e2e": suite.train_end_to_end, "loader": suite.loader, "dino": suite.dino,
            "extract": suite.extract, "knn": suite.knn, "helpers": suite.helpers}
    only = [r for r in args.only.split(",") if r] or list(rows)
    try:
        for name in only:
            suite.run(name, rows[name])
    finally:
        import shutil

        shutil.rmtree(suite.tmp, ignore_errors=True)
    print_table(suite, dev)
    return suite


def print_table(suite: Suite, dev: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"issue 12 GPU suite on {dev} ({time.perf_counter() - suite.t0:.0f} s)")
    for col in ("stage", "what", "img/s", "peer (same run)", "peer img/s", "x peer", "note"):
        table.add_column(col, justify="right" if "img/s" in col or col == "x peer" else "left")
    for stage, what, ours, peer_name, peer, note in suite.rows:
        table.add_row(stage, what, "" if ours is None else f"{ours:,.0f}", peer_name,
                      "" if peer is None else f"{peer:,.0f}", f"{ours / peer:.2f}" if ours and peer else "", note)
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
