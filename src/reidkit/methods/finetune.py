"""Supervised fine-tuning: the TransReID-SSL recipe (spec transreid_ssl.md §5), one readable module.

    from reidkit.config import load_config
    from reidkit.methods.finetune import FinetuneConfig, train
    cfg = load_config(FinetuneConfig, "configs/finetune/market_vit_small_ics.yaml", ["data.root=data/market"])
    run_dir = train(cfg)            # train(cfg, resume=True) continues a killed run

The story, top to bottom:
  1. recipe   ``FinetuneConfig``: data, model, loss, solver, train, eval, output (typed dataclasses;
              defaults are the official single-GPU recipe: ViT-S, batch 64 = 16 ids x 4, SGD lr 4e-4,
              2x bias lr, 120 epochs with 20 warm-up, soft-margin triplet + cross-entropy).
  2. loss     ``ReIDLoss``: ID loss on the BN feature (+ optional margin softmax, label smoothing),
              batch-hard triplet on the pre-BN feature, optional center loss.
  3. loop     ``train``: PK batches -> autocast forward -> loss -> NaN guard -> (scaled) backward ->
              clip -> step -> EMA; per epoch: log, evaluate every N epochs, write ``last.pt``
              (training state, atomic), ``last.safetensors`` / ``best.safetensors`` (models).

Runs under ``torchrun`` as DDP (NCCL on GPU, gloo on CPU): ``data.batch_size`` is the global batch,
split over the processes, each drawing its own disjoint PK batches (``reidkit.data.samplers``).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from reidkit.config import to_dict
from reidkit.data.train_loader import CacheMode, build_train_loader
from reidkit.data.transforms import build_test_transform, build_train_transform
from reidkit.losses.center import CenterLoss
from reidkit.losses.softmax import MarginSoftmax, cross_entropy
from reidkit.losses.triplet import TripletLoss
from reidkit.methods.ema import ModelEMA
from reidkit.methods.optim import build_optimizer, cosine_iter_schedule, step_epoch_lr, timm_cosine_epoch_lr
from reidkit.methods.training_run import (autocast_dtype, eval_due, evaluate_query_gallery, keep_best,
                                          open_run_folder, say)
from reidkit.utils.checkpoint import NonFiniteLossError, load_state, rng_state, save_state, set_rng_state
from reidkit.utils.io import save_json
from reidkit.utils.metric_log import MetricLog
from reidkit.utils.progress import make_progress
from reidkit.utils.seed import seed_everything


class FinetuneError(ValueError):
    """A fine-tuning setup that cannot run (bad combination of options, existing run folder, ...)."""


# ---------------------------------------------------------------------------------------------
# 1. the recipe


@dataclass
class DatasetSource:
    format: str = "market1501"      # a reidkit.data.datasets format: market1501, msmt17, mm, folder, csv, ...
    root: str = ""
    options: dict = field(default_factory=dict)  # extra reader options, e.g. {combine_val: true}


@dataclass
class DataConfig:
    format: str = "market1501"      # the main dataset: trained on, and its query/gallery evaluated
    root: str = ""
    options: dict = field(default_factory=dict)
    extra_train: list[DatasetSource] = field(default_factory=list)  # merged into training (pid/cam offsets)
    size: tuple[int, int] = (256, 128)            # (height, width) of train and test images
    train_interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    test_interpolation: Literal["bicubic", "bilinear"] = "bilinear"
    hflip: float = 0.5
    pad: int = 10
    erasing: float = 0.5                          # random erasing probability (per-pixel N(0,1) fill)
    batch_size: int = 64                          # global: P x K over all processes
    num_instances: int = 4                        # K images per identity in a batch
    num_workers: int = -1                         # -1: cores - 1 (at most 8)
    cache: CacheMode = "auto"                     # decode + resize once into memory ('auto': if it fits)
    cache_max_gb: float = 4.0
    on_error: Literal["skip", "raise"] = "skip"   # corrupt images: substitute and count, or stop


@dataclass
class ModelConfig:
    preset: str = "vit_small"                     # see `reidkit models`
    weights: str | None = None                    # pre-trained backbone (DINO / official / timm / ours)
    drop_path_rate: float = 0.1
    overrides: dict = field(default_factory=dict)  # any other ModelSpec field (stem, knn_k, sie_cameras, ...)


@dataclass
class LossConfig:
    id_loss: Literal["softmax", "arcface", "cosface", "circle", "none"] = "softmax"
    id_weight: float = 1.0
    label_smoothing: float = 0.0                  # official: off
    margin_scale: float | None = None             # margin softmax s (None: the paper's default)
    margin: float | None = None                   # margin softmax m
    triplet_weight: float = 1.0
    triplet_margin: float | None = None           # None: soft margin (official)
    triplet_normalize: bool = False               # official: un-normalised Euclidean
    center_weight: float = 0.0                    # bag of tricks: 0.0005
    center_lr: float = 0.5


@dataclass
class SolverConfig:
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 4e-4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    weight_decay_bias: float = 1e-4
    bias_lr_factor: float = 2.0
    layer_decay: float = 1.0                      # AdamW only: < 1 turns on layer-wise lr decay
    betas: tuple[float, float] = (0.9, 0.999)
    epochs: int = 120
    scheduler: Literal["cosine", "cosine_iter", "step", "constant"] = "cosine"
    warmup_epochs: int = 20
    warmup_factor: float = 0.01                   # warm-up starts at this x lr
    min_lr_factor: float = 0.002                  # cosine floor, x lr
    step_size: int = 40
    gamma: float = 0.1
    grad_clip: float = 0.0                        # max global grad norm; 0 = off
    amp: Literal["none", "bf16", "fp16"] = "none"
    ema: float = 0.0                              # EMA decay of the weights (e.g. 0.999); 0 = off


@dataclass
class TrainConfig:
    seed: int = 1234
    device: str = "auto"                          # auto | cpu | cuda | cuda:N
    deterministic: bool = False
    log_every: int = 20                           # iterations between progress-bar updates
    sync_bn: bool = False                         # DDP: synchronise BatchNorm statistics


@dataclass
class EvalConfig:
    every: int = 0                                # evaluate every N epochs (and always at the end); 0 = end only
    enabled: bool = True
    batch_size: int = 128
    flip: bool = False
    metric: Literal["cosine", "euclidean"] = "cosine"
    protocol: Literal["market", "cuhk03", "no-camera"] = "market"
    num_workers: int = -1


@dataclass
class FinetuneConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: str = "runs/finetune"


# ---------------------------------------------------------------------------------------------
# 2. the loss


class TrainNet(nn.Module):
    """The ReID model plus, for margin losses, the margin classifier on its BN feature.

    ``forward(x, camids, labels) -> (logits (B, C) or None, feat (B, D) pre-BN)``. One module, so
    that DDP sees every trainable parameter in a single forward.
    """

    def __init__(self, model: nn.Module, margin_head: MarginSoftmax | None = None, use_camids: bool = False):
        super().__init__()
        self.model, self.margin_head, self.use_camids = model, margin_head, use_camids

    def forward(self, x: torch.Tensor, camids: torch.Tensor, labels: torch.Tensor):
        cams = camids if self.use_camids else None
        if self.margin_head is None:
            return self.model(x, cams)
        feat = self.model.global_feature(x, cams)
        bn, _ = self.model.head(feat)
        return self.margin_head(bn, labels), feat


class ReIDLoss(nn.Module):
    """``id_weight * ID(logits) + triplet_weight * triplet(feat) + center_weight * center(feat)``."""

    def __init__(self, cfg: LossConfig, num_classes: int, feat_dim: int):
        super().__init__()
        self.cfg = cfg
        self.triplet = TripletLoss(cfg.triplet_margin, cfg.triplet_normalize) if cfg.triplet_weight > 0 else None
        self.center = CenterLoss(num_classes, feat_dim) if cfg.center_weight > 0 else None

    def forward(self, logits, feat, labels) -> tuple[torch.Tensor, dict[str, float]]:
        parts: dict[str, torch.Tensor] = {}
        if logits is not None and self.cfg.id_weight > 0:
            parts["id"] = self.cfg.id_weight * cross_entropy(logits, labels, self.cfg.label_smoothing)
        if self.triplet is not None:
            parts["triplet"] = self.cfg.triplet_weight * self.triplet(feat, labels)
        if self.center is not None:
            parts["center"] = self.cfg.center_weight * self.center(feat, labels)
        total = sum(parts.values())
        stats = {k: float(v.detach()) for k, v in parts.items()}
        if logits is not None:
            stats["acc"] = float((logits.detach().argmax(1) == labels).float().mean())
        return total, stats


# ---------------------------------------------------------------------------------------------
# setup helpers


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_pref: str) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    d = _Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device_pref == "auto":
        device = torch.device(f"cuda:{d.local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_pref)
        if device.type == "cuda" and device.index is None:
            device = torch.device(f"cuda:{d.local_rank}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return d, device


def _load_data(cfg: DataConfig):
    from reidkit.data.datasets import load_dataset
    from reidkit.data.datasets.merge import merge_datasets

    if not cfg.root:
        raise FinetuneError("data.root is not set: give the dataset folder, e.g. `data.root=data/market1501`")
    main = load_dataset(cfg.format, cfg.root, **cfg.options)
    if cfg.extra_train:
        extra = [load_dataset(s.format, s.root, **s.options) for s in cfg.extra_train]
        main = merge_datasets([main, *extra], test_from=0)
    if not main.train:
        raise FinetuneError(f"{cfg.root}: the training split is empty")
    pids = sorted({r.pid for r in main.train})
    if pids != list(range(len(pids))):
        raise FinetuneError(f"{cfg.root}: training pids must be 0..N-1 (relabelled); got {pids[:5]}...")
    return main


def _lr_for(cfg: SolverConfig, group: dict, epoch: int, step: int, iter_sched) -> float:
    peak = group["peak_lr"]
    if cfg.scheduler == "cosine":
        return timm_cosine_epoch_lr(epoch, peak, cfg.lr * group.get("lr_scale", 1.0), cfg.epochs,
                                    cfg.warmup_epochs, cfg.warmup_factor, cfg.min_lr_factor)
    if cfg.scheduler == "cosine_iter":
        return peak * float(iter_sched[min(step, len(iter_sched) - 1)])
    if cfg.scheduler == "step":
        return step_epoch_lr(epoch, peak, cfg.step_size, cfg.gamma)
    return peak


def _check(cfg: FinetuneConfig, world: int) -> None:
    d, s = cfg.data, cfg.solver
    per_rank, rem = divmod(d.batch_size, world)
    if rem or per_rank % d.num_instances:
        raise FinetuneError(f"data.batch_size={d.batch_size} must split into {world} process(es) x "
                            f"a multiple of num_instances={d.num_instances}")
    if s.epochs < 1:
        raise FinetuneError(f"solver.epochs must be >= 1, got {s.epochs}")
    if s.layer_decay != 1.0 and s.optimizer != "adamw":
        raise FinetuneError("solver.layer_decay needs solver.optimizer=adamw")
    if cfg.loss.id_weight <= 0 and cfg.loss.triplet_weight <= 0:
        raise FinetuneError("both loss.id_weight and loss.triplet_weight are 0: nothing to train")


# ---------------------------------------------------------------------------------------------
# evaluation


def evaluate_model(model: nn.Module, dataset, cfg: FinetuneConfig, device: torch.device,
                   progress: bool = True) -> dict[str, float]:
    """mAP, R1, R5, R10, mINP (percent) of ``model`` on the dataset's query / gallery."""
    workers = cfg.eval.num_workers if cfg.eval.num_workers >= 0 else min(4, max(0, (os.cpu_count() or 1) - 1))
    return evaluate_query_gallery(model, dataset, build_test_transform(cfg.data.size, cfg.data.test_interpolation),
                                  cfg.eval.batch_size, device, cfg.eval.metric, cfg.eval.protocol,
                                  amp=autocast_dtype(cfg.solver.amp, device, FinetuneError), flip=cfg.eval.flip,
                                  num_workers=workers, progress=progress)


# ---------------------------------------------------------------------------------------------
# 3. the loop


def train(cfg: FinetuneConfig, resume: bool = False) -> Path:
    """Fine-tune and return the run folder (config.yaml, log.csv, last.pt, last/best.safetensors,
    summary.json). ``resume=True`` continues from ``last.pt`` with the same results as an
    uninterrupted run of the same seed. Raises ``NonFiniteLossError`` on a NaN/inf loss (the last
    good checkpoint stays)."""
    from reidkit.models import build_model, save_model

    d, device = _init_distributed(cfg.train.device)
    _check(cfg, d.world)
    out = Path(cfg.output)
    state_path = open_run_folder(out, cfg, resume, FinetuneError, write=d.main)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    if device.type == "cuda" and not cfg.train.deterministic:
        torch.backends.cudnn.benchmark = True

    # data
    dataset = _load_data(cfg.data)
    num_classes = len({r.pid for r in dataset.train})
    size = tuple(cfg.data.size)
    train_tf = build_train_transform(size, interpolation=cfg.data.train_interpolation, hflip=cfg.data.hflip,
                                     pad=cfg.data.pad, erasing=cfg.data.erasing)
    loader, sampler, train_set = build_train_loader(
        dataset.train, train_tf, batch_size=cfg.data.batch_size // d.world, num_instances=cfg.data.num_instances,
        seed=cfg.train.seed, size=size, num_workers=cfg.data.num_workers, cache=cfg.data.cache,
        cache_max_gb=cfg.data.cache_max_gb, pin_memory=device.type == "cuda", on_error=cfg.data.on_error,
        rank=d.rank, world_size=d.world)

    # model, loss, optimiser; seeded again so that the data setup (cache or not) never changes the init
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    margin = cfg.loss.id_loss in ("arcface", "cosface", "circle")
    with_classifier = cfg.loss.id_loss == "softmax" and cfg.loss.id_weight > 0
    overrides = {"img_size": size, "drop_path_rate": cfg.model.drop_path_rate, **cfg.model.overrides}
    model = build_model(cfg.model.preset, num_classes=num_classes if with_classifier else 0, **overrides)
    if cfg.model.weights:
        from reidkit.models.checkpoints import load_weights
        # backbone only: the BNNeck and classifier start fresh for this training set (as officially)
        say(load_weights(model, cfg.model.weights, head=False).summary(), d.main)
    head = MarginSoftmax(model.feat_dim, num_classes, cfg.loss.id_loss, cfg.loss.margin_scale, cfg.loss.margin) \
        if margin and cfg.loss.id_weight > 0 else None
    net = TrainNet(model, head, use_camids=getattr(model.spec, "sie_cameras", 0) > 0).to(device)
    if d.world > 1 and cfg.train.sync_bn:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    criterion = ReIDLoss(cfg.loss, num_classes, model.feat_dim).to(device)
    s = cfg.solver
    optimizer = build_optimizer(net, s.optimizer, s.lr, s.weight_decay, momentum=s.momentum,
                                bias_lr_factor=s.bias_lr_factor, weight_decay_bias=s.weight_decay_bias,
                                layer_decay=s.layer_decay, betas=s.betas)
    center_opt = torch.optim.SGD(criterion.center.parameters(), lr=cfg.loss.center_lr) \
        if criterion.center is not None else None
    amp = autocast_dtype(s.amp, device, FinetuneError)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    ema = ModelEMA(model, s.ema) if s.ema > 0 else None
    ddp = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) \
        if d.world > 1 else net

    # resume
    start_epoch, step, best = 0, 0, {"mAP": -1.0, "epoch": 0}
    log = MetricLog(out / "log.csv") if d.main else None
    if resume:
        state = load_state(state_path, map_location="cpu")
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        if center_opt is not None:
            criterion.load_state_dict(state["criterion"])
            center_opt.load_state_dict(state["center_opt"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, step, best = int(state["epoch"]), int(state["step"]), dict(state["best"])
        set_rng_state(state["rng"])
        say(f"resumed {out} after epoch {start_epoch}", d.main)
    if log is not None:  # drop the rows of an epoch that was logged but not saved (all of them when starting)
        log.truncate_after(start_epoch)

    iters = len(sampler)
    iter_sched = cosine_iter_schedule(1.0, s.min_lr_factor, s.epochs, max(iters, 1), s.warmup_epochs,
                                      s.warmup_factor) if s.scheduler == "cosine_iter" else None
    params = [p for p in net.parameters() if p.requires_grad]
    summary: dict[str, Any] = {"num_classes": num_classes, "num_train_images": len(dataset.train),
                               "world_size": d.world, "device": str(device)}
    last_metrics: dict[str, float] = {}
    row: dict[str, float] = {}
    with make_progress(transient=False) as bar:
        total_task = bar.add_task("fine-tune", total=(s.epochs - start_epoch) * iters, visible=d.main)
        for epoch in range(start_epoch, s.epochs):
            sampler.set_epoch(epoch)
            ddp.train()
            if ema is not None:
                ema.module.eval()
            sums: dict[str, float] = {}
            n_batches, n_images, t_data, t0 = 0, 0, 0.0, time.perf_counter()
            t_last = t0
            for it, (imgs, pids, camids, _) in enumerate(loader):
                t_data += time.perf_counter() - t_last
                for g in optimizer.param_groups:
                    g["lr"] = _lr_for(s, g, epoch, step, iter_sched)
                imgs = imgs.to(device, non_blocking=True)
                pids, camids = pids.to(device, non_blocking=True), camids.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                    logits, feat = ddp(imgs, camids, pids)
                loss, stats = criterion(logits, feat.float(), pids)
                _guard(loss, d, f"epoch {epoch + 1}, iteration {it + 1}", state_path)
                optimizer.zero_grad(set_to_none=True)
                if center_opt is not None:
                    center_opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if s.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if center_opt is not None:  # centres move at their own lr, not scaled by the loss weight
                    for p in criterion.center.parameters():
                        if p.grad is not None:
                            p.grad.mul_(1.0 / cfg.loss.center_weight)
                    center_opt.step()
                if ema is not None:
                    ema.update(model)
                step += 1
                n_batches += 1
                n_images += imgs.shape[0]
                sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.advance(total_task)
                if d.main and (it % cfg.train.log_every == 0 or it == iters - 1):
                    bar.update(total_task, description=f"epoch {epoch + 1}/{s.epochs} loss "
                                                       f"{sums['loss'] / n_batches:.3f}")
                t_last = time.perf_counter()
            elapsed = time.perf_counter() - t0
            row = {k: v / max(n_batches, 1) for k, v in sums.items()}
            row.update(lr=optimizer.param_groups[0]["lr"], images_per_s=n_images * d.world / max(elapsed, 1e-9),
                       data_wait=t_data / max(elapsed, 1e-9), epoch_s=elapsed)

            # evaluate, then publish models and the training state (rank 0 only)
            test_model = ema.module if ema is not None else model
            if d.main and cfg.eval.enabled and dataset.query and dataset.gallery and \
                    eval_due(epoch + 1, s.epochs, cfg.eval.every):
                last_metrics = evaluate_model(test_model, dataset, cfg, device)
                row.update(last_metrics)
                best = keep_best(test_model, last_metrics, best, epoch + 1, out)
            if d.main:
                save_model(test_model, out / "last.safetensors")
                state = {"epoch": epoch + 1, "step": step, "best": best, "rng": rng_state(),
                         "net": net.state_dict(), "optimizer": optimizer.state_dict(),
                         "scaler": scaler.state_dict(), "config": to_dict(cfg)}
                if ema is not None:
                    state["ema"] = ema.state_dict()
                if center_opt is not None:
                    state["criterion"], state["center_opt"] = criterion.state_dict(), center_opt.state_dict()
                save_state(state_path, state)
                log.log(epoch + 1, **row)
                bar.console.print(_epoch_line(epoch + 1, s.epochs, row), highlight=False)
            if d.world > 1:
                dist.barrier()

    summary.update(best_mAP=best["mAP"], best_epoch=best["epoch"], final=last_metrics,
                   images_per_s=row.get("images_per_s"), data_wait=row.get("data_wait"),
                   skipped_images=getattr(train_set, "num_skipped", 0))
    if d.world > 1:
        summary["ranks_agree"] = _ranks_agree(net, device)
    if d.main:
        save_json(out / "summary.json", summary)
        if last_metrics:
            _print_metrics(last_metrics, out)
    if d.world > 1:
        dist.barrier()
    return out


def _guard(loss: torch.Tensor, d: _Dist, where: str, state_path: Path) -> None:
    """NaN/inf loss: stop every process with a clear message (the last good ``last.pt`` stays)."""
    finite = torch.isfinite(loss.detach()).all().to(torch.int32).reshape(1)
    if d.world > 1:  # all ranks must stop together, or the healthy ones hang in the next all-reduce
        finite = finite.to(loss.device)
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    if not bool(finite.item()):
        kept = f"the last good checkpoint {state_path} is kept" if state_path.exists() else \
            "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"loss became {loss.detach().float().cpu().tolist()} at {where}; stopping ({kept}). Lower "
            "solver.lr, set solver.grad_clip, or use solver.amp=bf16 instead of fp16.")


def _ranks_agree(net: nn.Module, device: torch.device) -> bool:
    """DDP keeps the parameters of all replicas identical; check it (a digest per parameter, gathered).
    BN running statistics are not compared: each rank updates them from its own batches."""
    digest = torch.stack([p.detach().double().sum() for p in net.parameters()]).to(device)
    gathered = [torch.zeros_like(digest) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, digest)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def _epoch_line(epoch: int, epochs: int, row: dict) -> str:
    parts = [f"epoch {epoch}/{epochs}", f"loss {row['loss']:.3f}"]
    parts += [f"{k} {row[k]:.3f}" for k in ("id", "triplet", "center") if k in row]
    if "acc" in row:
        parts.append(f"acc {row['acc'] * 100:.1f}%")
    parts += [f"lr {row['lr']:.2e}", f"{row['images_per_s']:.0f} img/s", f"data wait {row['data_wait'] * 100:.0f}%"]
    if "mAP" in row:
        parts.append(f"[bold]mAP {row['mAP']:.1f} R1 {row['R1']:.1f}[/]")
    return "  ".join(parts)


def _print_metrics(metrics: dict[str, float], out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"fine-tuned model ({out})")
    for k in metrics:
        table.add_column(k, justify="right")
    table.add_row(*(f"{v:.1f}" for v in metrics.values()))
    say(table)


def load_run_summary(run_dir: str | Path) -> dict:
    """The ``summary.json`` a finished run wrote (best/final metrics, speed)."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise FinetuneError(f"{path}: no summary; the run has not finished")
    return json.loads(path.read_text())


__all__ = ["FinetuneConfig", "DataConfig", "DatasetSource", "ModelConfig", "LossConfig", "SolverConfig",
           "TrainConfig", "EvalConfig", "FinetuneError", "ReIDLoss", "TrainNet", "train", "evaluate_model",
           "load_run_summary"]
