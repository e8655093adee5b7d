"""Supervised fine-tuning: the TransReID-SSL recipe (He et al. 2021, "Self-supervised pre-training for
transformer-based person re-identification", §4.2 and the official repo's configs), one readable module.

    from reidkit.config import load_config
    from reidkit.methods.finetune import FinetuneConfig, train
    cfg = load_config(FinetuneConfig, "configs/finetune/market_vit_small_ics.yaml", ["data.root=data/market"])
    run_dir = train(cfg)            # train(cfg, resume=True) continues a killed run

The story, top to bottom:
  1. recipe   ``FinetuneConfig``: the shared run keys (output, seed, device, precision, ...) plus data,
              model, loss, solver, eval (defaults are the official single-GPU recipe: ViT-S, batch
              64 = 16 ids x 4, SGD lr 4e-4, 2x bias lr, 120 epochs with 20 warm-up, soft-margin
              triplet + cross-entropy).
  2. loss     ``ReIDLoss``: ID loss on the BN feature (+ optional margin softmax, label smoothing),
              batch-hard triplet on the pre-BN feature, optional center loss.
  3. epoch    ``train_one_epoch``: PK batches -> autocast forward -> loss -> NaN guard -> (scaled)
              backward -> clip -> step -> EMA.
  4. loop     ``train``: per epoch: train, evaluate every N epochs (keep the best), publish
              ``last.safetensors``, log, save ``last.pt``. The engine (``reidkit.engine``) does the
              device/DDP set-up, precision, run folder, checkpoints and logging.

Runs under ``torchrun`` as DDP (NCCL on GPU, gloo on CPU): ``data.batch_size`` is the global batch,
split over the processes, each drawing its own disjoint PK batches (``reidkit.data.samplers``).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reidkit.data.device_augment import build_device_train_loader
from reidkit.data.train_loader import build_train_loader, decode_device
from reidkit.data.transforms import build_test_transform, build_train_transform
from reidkit.engine.distributed import ranks_agree, wrap_ddp
from reidkit.engine.evaluate import evaluate_query_gallery
from reidkit.engine.precision import autocast, grad_scaler, maybe_compile, to_device
from reidkit.engine.run import Run, start
from reidkit.losses.center import CenterLoss
from reidkit.losses.softmax import MarginSoftmax, cross_entropy
from reidkit.losses.triplet import TripletLoss
from reidkit.methods.ema import ModelEMA
from reidkit.methods.optim import build_optimizer, cosine_iter_schedule, step_epoch_lr, timm_cosine_epoch_lr
from reidkit.recipes.finetune import (DataConfig, DatasetSource, EvalConfig, FinetuneConfig, FinetuneError,
                                      LossConfig, ModelConfig, SolverConfig)
from reidkit.utils.checkpoint import rng_state, set_rng_state
from reidkit.utils.io import save_json
from reidkit.utils.seed import seed_everything


# ---------------------------------------------------------------------------------------------
# 1. the recipe: ``FinetuneConfig`` in reidkit.recipes.finetune (torch-free, so that ``reidkit train`` checks
#    it before torch is imported), re-exported here.


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


def build_net(cfg: FinetuneConfig, num_classes: int, img_size: tuple[int, int]) -> TrainNet:
    """The model (+ margin head), with the backbone weights of ``model.weights`` when given."""
    from reidkit.models import build_model

    margin = cfg.loss.id_loss in ("arcface", "cosface", "circle")
    with_classifier = cfg.loss.id_loss == "softmax" and cfg.loss.id_weight > 0
    knobs = {**cfg.model.knobs(), "img_size": img_size}
    model = build_model(cfg.model.preset, num_classes=num_classes if with_classifier else 0, **knobs)
    head = MarginSoftmax(model.feat_dim, num_classes, cfg.loss.id_loss, cfg.loss.margin_scale, cfg.loss.margin) \
        if margin and cfg.loss.id_weight > 0 else None
    return TrainNet(model, head, use_camids=getattr(model.spec, "sie_cameras", 0) > 0)


def lr_at(cfg: SolverConfig, group: dict, epoch: int, step: int, iter_sched) -> float:
    """The lr of a parameter group during (0-based) ``epoch`` at global iteration ``step``."""
    peak = group["peak_lr"]
    if cfg.scheduler == "cosine":
        return timm_cosine_epoch_lr(epoch, peak, cfg.lr * group.get("lr_scale", 1.0), cfg.epochs,
                                    cfg.warmup_epochs, cfg.warmup_factor, cfg.min_lr_factor)
    if cfg.scheduler == "cosine_iter":
        return peak * float(iter_sched[min(step, len(iter_sched) - 1)])
    if cfg.scheduler == "step":
        return step_epoch_lr(epoch, peak, cfg.step_size, cfg.gamma)
    return peak


def _load_data(cfg: DataConfig):
    from reidkit.data.datasets import load_dataset
    from reidkit.data.datasets.merge import merge_datasets

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


def evaluate_model(model: nn.Module, dataset, cfg: FinetuneConfig, device: torch.device,
                   progress: bool = True) -> dict[str, float]:
    """mAP, R1, R5, R10, mINP (percent) of ``model`` on the dataset's query / gallery."""
    from reidkit.engine.precision import autocast_dtype

    workers = cfg.eval.num_workers if cfg.eval.num_workers >= 0 else min(4, max(0, (os.cpu_count() or 1) - 1))
    return evaluate_query_gallery(model, dataset, build_test_transform(cfg.data.size, cfg.data.test_interpolation),
                                  cfg.eval.batch_size, device, cfg.eval.metric, cfg.eval.protocol,
                                  amp=autocast_dtype(cfg.precision, device, FinetuneError), flip=cfg.eval.flip,
                                  num_workers=workers, progress=progress)


# ---------------------------------------------------------------------------------------------
# 3. one epoch


@dataclass
class Trainer:
    """What ``train_one_epoch`` steps: the (DDP-wrapped) net, its loss and optimisers, the schedule."""

    net: nn.Module                                # DDP / compiled wrapper of ``TrainNet``
    train_net: TrainNet                           # the unwrapped net (its state is saved)
    model: nn.Module                              # the ReID model inside (for the EMA)
    criterion: ReIDLoss
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    iter_sched: Any = None                        # per-iteration lr factors (scheduler=cosine_iter)
    center_opt: torch.optim.Optimizer | None = None
    ema: ModelEMA | None = None
    step: int = 0                                 # global iteration
    augment: nn.Module | None = None              # data.device_augment: the device half of the augmentation

    def state_dict(self) -> dict:
        state = {"step": self.step, "net": self.train_net.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.center_opt is not None:
            state["criterion"], state["center_opt"] = self.criterion.state_dict(), self.center_opt.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.train_net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.center_opt is not None:
            self.criterion.load_state_dict(state["criterion"])
            self.center_opt.load_state_dict(state["center_opt"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])


def train_one_epoch(run: Run, t: Trainer, loader, epoch: int, bar, task) -> dict[str, float]:
    """One pass over the PK batches; returns the epoch's mean losses/accuracy and speed."""
    cfg, s, device = run.cfg, run.cfg.solver, run.device
    params = [p for p in t.net.parameters() if p.requires_grad]
    t.net.train()
    if t.ema is not None:
        t.ema.module.eval()
    sums: dict[str, float] = {}
    n_batches, n_images, t_data, t0 = 0, 0, 0.0, time.perf_counter()
    t_last, iters = t0, len(loader)
    for it, (imgs, pids, camids, _) in enumerate(loader):
        t_data += time.perf_counter() - t_last
        for g in t.optimizer.param_groups:
            g["lr"] = lr_at(s, g, epoch, t.step, t.iter_sched)
        imgs, pids, camids = to_device((imgs, pids, camids), device)
        if t.augment is not None:
            imgs = t.augment(imgs)
        with autocast(device, run.amp):
            logits, feat = t.net(imgs, camids, pids)
        loss, stats = t.criterion(logits, feat.float(), pids)
        run.guard(loss, f"epoch {epoch + 1}, iteration {it + 1}",
                  "Lower solver.lr, set solver.grad_clip, or use precision=bf16 instead of fp16.")
        t.optimizer.zero_grad(set_to_none=True)
        if t.center_opt is not None:
            t.center_opt.zero_grad(set_to_none=True)
        t.scaler.scale(loss).backward()
        if s.grad_clip > 0:
            t.scaler.unscale_(t.optimizer)
            torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
        t.scaler.step(t.optimizer)
        t.scaler.update()
        if t.center_opt is not None:  # centres move at their own lr, not scaled by the loss weight
            for p in t.criterion.center.parameters():
                if p.grad is not None:
                    p.grad.mul_(1.0 / cfg.loss.center_weight)
            t.center_opt.step()
        if t.ema is not None:
            t.ema.update(t.model)
        t.step += 1
        n_batches += 1
        n_images += imgs.shape[0]
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
        for k, v in stats.items():
            sums[k] = sums.get(k, 0.0) + v
        bar.advance(task)
        if run.main and (it % cfg.log_every == 0 or it == iters - 1):
            bar.update(task, description=f"epoch {epoch + 1}/{s.epochs} loss {sums['loss'] / n_batches:.3f}")
        t_last = time.perf_counter()
    elapsed = time.perf_counter() - t0
    row = {k: v / max(n_batches, 1) for k, v in sums.items()}
    row.update(lr=t.optimizer.param_groups[0]["lr"], images_per_s=n_images * run.dist.world / max(elapsed, 1e-9),
               data_wait=t_data / max(elapsed, 1e-9), epoch_s=elapsed)
    return row


# ---------------------------------------------------------------------------------------------
# 4. the loop


def train(cfg: FinetuneConfig, resume: bool = False, force: bool = False) -> Path:
    """Fine-tune and return the run folder (config.yaml, log.csv, last.pt, last/best.safetensors,
    summary.json). ``resume=True`` continues from ``last.pt`` with the same results as an
    uninterrupted run of the same seed (``force``: even when the model/data/batch changed). Raises
    ``NonFiniteLossError`` on a NaN/inf loss (the last good checkpoint stays)."""
    run = start(cfg, resume, force, FinetuneError)
    d, device, s, out = run.dist, run.device, cfg.solver, run.out
    size = tuple(cfg.data.size)
    img_size = tuple(cfg.model.img_size or size)

    # data
    dataset = _load_data(cfg.data)
    num_classes = len({r.pid for r in dataset.train})
    train_tf = build_train_transform(size, interpolation=cfg.data.train_interpolation, hflip=cfg.data.hflip,
                                     pad=cfg.data.pad, erasing=cfg.data.erasing)
    build_loader = build_device_train_loader if cfg.data.device_augment else build_train_loader
    loader, sampler, train_set, *augment = build_loader(
        dataset.train, train_tf, batch_size=cfg.data.batch_size // d.world, num_instances=cfg.data.num_instances,
        seed=cfg.seed, size=size, num_workers=cfg.data.num_workers, cache=cfg.data.cache,
        cache_max_gb=cfg.data.cache_max_gb, pin_memory=device.type == "cuda", on_error=cfg.data.on_error,
        rank=d.rank, world_size=d.world, decode_device=decode_device(cfg.data.decode, device))

    # model, loss, optimiser; seeded again so that the data setup (cache or not) never changes the init
    seed_everything(cfg.seed, cfg.deterministic)
    net = build_net(cfg, num_classes, img_size)
    model = net.model
    if cfg.model.weights:
        from reidkit.models.checkpoints import load_weights
        # backbone only: the BNNeck and classifier start fresh for this training set (as officially)
        run.say(load_weights(model, cfg.model.weights, head=False).summary())
    net = net.to(device)
    if d.world > 1 and cfg.model.sync_bn:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    criterion = ReIDLoss(cfg.loss, num_classes, model.feat_dim).to(device)
    optimizer = build_optimizer(net, s.optimizer, s.lr, s.weight_decay, momentum=s.momentum,
                                bias_lr_factor=s.bias_lr_factor, weight_decay_bias=s.weight_decay_bias,
                                layer_decay=s.layer_decay, betas=s.betas, fused=device.type == "cuda")
    center_opt = torch.optim.SGD(criterion.center.parameters(), lr=cfg.loss.center_lr) \
        if criterion.center is not None else None
    iters = len(sampler)
    t = Trainer(maybe_compile(wrap_ddp(net, d, device), cfg.compile), net, model, criterion, optimizer,
                grad_scaler(run.amp), center_opt=center_opt, ema=ModelEMA(model, s.ema) if s.ema > 0 else None,
                iter_sched=cosine_iter_schedule(1.0, s.min_lr_factor, s.epochs, max(iters, 1), s.warmup_epochs,
                                                s.warmup_factor) if s.scheduler == "cosine_iter" else None,
                augment=augment[0].to(device) if augment else None)

    start_epoch, state = 0, run.restore()
    if state is not None:
        t.load_state_dict(state)
        start_epoch, run.best = int(state["epoch"]), dict(state["best"])
        set_rng_state(state["rng"])
        run.say(f"resumed {out} after epoch {start_epoch}")
    run.resume_log(start_epoch, state)

    summary: dict[str, Any] = {"num_classes": num_classes, "num_train_images": len(dataset.train),
                               "world_size": d.world, "device": str(device)}
    last_metrics: dict[str, float] = {}
    row: dict[str, float] = {}
    with run.progress() as bar:
        task = bar.add_task("fine-tune", total=(s.epochs - start_epoch) * iters, visible=d.main)
        for epoch in range(start_epoch, s.epochs):
            sampler.set_epoch(epoch)
            row = train_one_epoch(run, t, loader, epoch, bar, task)
            # evaluate, then publish the model, log, and save the training state (rank 0 only)
            test_model = t.ema.module if t.ema is not None else model
            if d.main and cfg.eval.enabled and dataset.query and dataset.gallery and \
                    run.eval_due(epoch + 1, s.epochs, cfg.eval.every):
                last_metrics = evaluate_model(test_model, dataset, cfg, device)
                row.update(last_metrics)
                run.keep_best(test_model, last_metrics, epoch + 1)
            run.publish(test_model, "last.safetensors")
            run.save({"epoch": epoch + 1, "best": run.best, "rng": rng_state(), "log_row": row, **t.state_dict()})
            run.log_row(epoch + 1, **row)
            if d.main:
                bar.console.print(_epoch_line(epoch + 1, s.epochs, row), highlight=False)
            run.barrier()

    summary.update(best_mAP=run.best["mAP"], best_epoch=run.best["epoch"], final=last_metrics,
                   images_per_s=row.get("images_per_s"), data_wait=row.get("data_wait"),
                   skipped_images=getattr(train_set, "num_skipped", 0))
    if d.world > 1:
        summary["ranks_agree"] = ranks_agree(net, device)
    if d.main:
        save_json(out / "summary.json", summary)
        if last_metrics:
            _print_metrics(last_metrics, out, run)
    run.barrier()
    return out


def _epoch_line(epoch: int, epochs: int, row: dict) -> str:
    parts = [f"epoch {epoch}/{epochs}", f"loss {row['loss']:.3f}"]
    parts += [f"{k} {row[k]:.3f}" for k in ("id", "triplet", "center") if k in row]
    if "acc" in row:
        parts.append(f"acc {row['acc'] * 100:.1f}%")
    parts += [f"lr {row['lr']:.2e}", f"{row['images_per_s']:.0f} img/s", f"data wait {row['data_wait'] * 100:.0f}%"]
    if "mAP" in row:
        parts.append(f"[bold]mAP {row['mAP']:.1f} R1 {row['R1']:.1f}[/]")
    return "  ".join(parts)


def _print_metrics(metrics: dict[str, float], out: Path, run: Run) -> None:
    from rich.table import Table

    table = Table(title=f"fine-tuned model ({out})")
    for k in metrics:
        table.add_column(k, justify="right")
    table.add_row(*(f"{v:.1f}" for v in metrics.values()))
    run.say(table)


def load_run_summary(run_dir: str | Path) -> dict:
    """The ``summary.json`` a finished run wrote (best/final metrics, speed)."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise FinetuneError(f"{path}: no summary; the run has not finished")
    return json.loads(path.read_text())


__all__ = ["FinetuneConfig", "DataConfig", "DatasetSource", "ModelConfig", "LossConfig", "SolverConfig",
           "EvalConfig", "FinetuneError", "ReIDLoss", "TrainNet", "Trainer", "train_one_epoch", "train",
           "evaluate_model", "load_run_summary"]
