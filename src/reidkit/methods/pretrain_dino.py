"""DINO self-supervised pre-training of a reidkit ViT on unlabelled person images (Caron et al. 2021,
"Emerging properties in self-supervised vision transformers"; the person re-ID recipe of TransReID-SSL,
He et al. 2021, §3.1 and Table 1).

The story, top to bottom:

1. the recipe: ``PretrainConfig`` (defaults = the paper: ViT-S/16, 256x128, 2+8 crops, 100 epochs,
   global batch 512, AdamW lr 5e-4 x batch/256, wd 0.04 -> 0.4, teacher 0.996 -> 1, out_dim 65536);
2. the data: an unlabelled folder or an ordered list (a CFS subset), each image turned into
   multi-crop views seeded by ``(seed, epoch, index)``; corrupt files are skipped and counted;
3. student and teacher: the same reidkit backbone + ``DINOHead``; the teacher is an EMA of the
   student and only sees the 2 global views;
4. schedules as per-iteration arrays computed up front (lr, weight decay, teacher momentum);
5. ``train_one_epoch``: loss, fp16/bf16, per-parameter clipping, last layer frozen in epoch 0,
   EMA update; ``pretrain`` around it: checkpoints ``last.pt`` (atomic, resumable mid-epoch) and
   ``last.safetensors`` (the teacher backbone as a reidkit model, ready for ``reidkit train``);
6. ``export_backbone``: our checkpoint or the official DINO layout -> a reidkit model file.

``pretrain(cfg, resume=False) -> run folder``. DDP: launch with ``torchrun``; each rank takes its
shard of the deterministic per-epoch permutation. Device, precision, run folder and checkpoints come
from the engine (``reidkit.engine``).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from reidkit.data.device_multicrop import DeviceMultiCrop, MultiCropDraws
from reidkit.data.multicrop import MultiCrop
from reidkit.data.samplers import sharded_loader
from reidkit.engine.distributed import barrier, gather_objects, mean_over_ranks, wrap_ddp
from reidkit.engine.precision import autocast, maybe_compile, to_device
from reidkit.engine.run import Run, start
from reidkit.losses.dino import DINOLoss
from reidkit.methods.optim import clip_gradients, cosine_iter_schedule, dino_param_groups
from reidkit.models.dino_head import DINOHead
from reidkit.recipes.pretrain import (PretrainConfig, PretrainData, PretrainError, PretrainHead,  # noqa: F401
                                      PretrainLoss, PretrainModel, PretrainSolver)  # (the recipe, re-exported)
from reidkit.utils.io import atomic_write_text
from reidkit.utils.seed import seed_everything


# ----------------------------------------------------------------------------------------------
# 1. The recipe: ``PretrainConfig`` in reidkit.recipes.pretrain (torch-free, so that ``reidkit pretrain``
#    checks it before torch is imported), re-exported here.
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# 2. The data
# ----------------------------------------------------------------------------------------------
class MultiCropPool(torch.utils.data.Dataset):
    """Unlabelled images -> ``(views, index)``, ``views`` a list of (3, H, W) float tensors.

    Decoding goes through ``UnlabelledImageDataset(on_error='skip')``: a corrupt file is logged,
    counted (``num_skipped``, shared by all DataLoader workers) and replaced by the next good image.
    The augmentation RNG is seeded by ``(seed, epoch, index)``: an image gets the same views in an
    uninterrupted run and in a resumed one, whichever worker loads it.
    """

    def __init__(self, paths: list[str], multicrop: MultiCrop, seed: int = 0):
        from reidkit.data.image_dataset import UnlabelledImageDataset

        if not paths:
            raise ValueError("the pre-training pool is empty")
        self.images = UnlabelledImageDataset(paths, transform=None, on_error="skip")
        self.multicrop, self.seed, self.epoch = multicrop, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_skipped(self) -> int:
        return self.images.num_skipped

    def __getitem__(self, index: int):
        img, _ = self.images[index]
        rng = random.Random((self.seed * 1_000_003 + self.epoch) * 2**32 + index)
        return self.multicrop(img, rng), index


def pool_paths(data: PretrainData) -> list[str]:
    """Absolute image paths of the pool: a recursive folder scan or an ordered list, cut by keep_*."""
    from reidkit.data.datasets import unlabelled

    if not data.root:
        raise ValueError("data.root is empty: give the image folder (or the image root of data.list_file)")
    return unlabelled.load_paths(data.root, file_list=data.list_file, keep_num=data.keep_num,
                                 keep_ratio=data.keep_ratio)


# ----------------------------------------------------------------------------------------------
# 3. Student and teacher
# ----------------------------------------------------------------------------------------------
class DINOModel(nn.Module):
    """Backbone + head over a list of views. Views of the same size go through the backbone in one
    batch (the 2 globals, then the locals); the CLS token of each is projected by the head.

    Keys are ``backbone.*`` and ``head.*``, the official DINO teacher layout."""

    def __init__(self, backbone: nn.Module, head: DINOHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, views: list[torch.Tensor]) -> torch.Tensor:
        """``views``: list of (B, 3, H_v, W_v) -> (len(views) * B, out_dim), view-major."""
        feats, start = [], 0
        while start < len(views):
            end = start
            while end < len(views) and views[end].shape[-2:] == views[start].shape[-2:]:
                end += 1
            tokens = self.backbone.forward_features(torch.cat(views[start:end]))
            if tokens.ndim != 3:
                raise ValueError("DINO pre-training needs a ViT backbone whose forward_features returns "
                                 f"tokens (B, 1+N, D); got a tensor of shape {tuple(tokens.shape)}")
            feats.append(tokens[:, 0])
            start = end
        return self.head(torch.cat(feats))


def model_kwargs(cfg: PretrainConfig) -> dict[str, Any]:
    """``build_model`` keyword arguments of the backbone, without the drop-path rate."""
    kw = cfg.model.knobs()
    kw.pop("drop_path_rate")
    kw["img_size"] = tuple(cfg.model.img_size or cfg.crops.global_size)
    return kw


def build_student_teacher(cfg: PretrainConfig) -> tuple[DINOModel, DINOModel, dict]:
    """Student (drop-path as configured) and teacher (no drop-path, same weights, no gradients).
    Returns also the ``ReIDModel.config`` that rebuilds the backbone for fine-tuning."""
    from reidkit.models import build_model

    kw = model_kwargs(cfg)
    student_reid = build_model(cfg.model.preset, num_classes=0, drop_path_rate=cfg.model.drop_path_rate, **kw)
    teacher_reid = build_model(cfg.model.preset, num_classes=0, drop_path_rate=0.0, **kw)
    h = cfg.head
    embed_dim = student_reid.backbone.embed_dim
    make_head = lambda: DINOHead(embed_dim, h.out_dim, h.hidden_dim, h.bottleneck_dim, h.nlayers, h.use_bn,
                                 h.norm_last_layer)
    student = DINOModel(student_reid.backbone, make_head())
    teacher = DINOModel(teacher_reid.backbone, make_head())
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    config = dict(teacher_reid.config)
    config["drop_path_rate"] = 0.1  # a sensible default for the fine-tuning that follows
    return student, teacher, config


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, for every parameter."""
    t = [p for p in teacher.parameters()]
    s = [p.detach() for p in student.parameters()]
    torch._foreach_mul_(t, momentum)
    torch._foreach_add_(t, s, alpha=1 - momentum)


# ----------------------------------------------------------------------------------------------
# 4. Schedules: plain per-iteration arrays; parameter groups and per-parameter clipping (all from
#    methods.optim)
# ----------------------------------------------------------------------------------------------
def cancel_last_layer_gradients(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        if "last_layer" in name:
            p.grad = None


# ----------------------------------------------------------------------------------------------
# 5. One epoch, and the loop
# ----------------------------------------------------------------------------------------------
@dataclass
class DINOTrainer:
    """What ``train_one_epoch`` steps: student (+ its DDP wrapper), teacher, loss, optimiser, schedules."""

    student: DINOModel
    student_ddp: nn.Module
    teacher: DINOModel
    dino_loss: DINOLoss
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    lr: Any                        # (epochs * iters,) arrays
    wd: Any
    momentum: Any
    iters: int
    multicrop: nn.Module | None = None   # data.device_augment: DeviceMultiCrop (views made on the device)


def train_one_epoch(run: Run, t: DINOTrainer, loader, pool, epoch: int, skip: int, progress, task,
                    save: Callable[[int, int, bool], None]) -> tuple[float, int, int, float]:
    """One epoch from iteration ``skip`` on; returns (mean loss, images seen, last global iteration, seconds)."""
    cfg, s, device, world = run.cfg, run.cfg.solver, run.device, run.dist.world
    t.student.train(), t.teacher.train()
    t0, seen, loss_sum, loss_n = time.perf_counter(), 0, 0.0, 0
    epoch_loss, epoch_n, it = 0.0, 0, epoch * t.iters + skip
    for i, (views, _) in enumerate(loader, start=skip):
        it = epoch * t.iters + i
        for g_i, group in enumerate(t.optimizer.param_groups):
            group["lr"] = float(t.lr[it])
            if g_i == 0:
                group["weight_decay"] = float(t.wd[it])
        views = to_device(views, device)
        if t.multicrop is not None:
            views = t.multicrop(*views)   # (canvases, draws) -> the views
        with autocast(device, run.amp):
            with torch.no_grad():
                teacher_out = t.teacher(views[:2])
            student_out = t.student_ddp(views)
            loss = t.dino_loss(student_out, teacher_out, epoch)
        run.guard(loss, f"epoch {epoch}, iteration {i}",
                  "Lower solver.lr, raise solver.warmup_epochs, or use precision=bf16 instead of fp16.")

        t.optimizer.zero_grad(set_to_none=True)
        if t.scaler is None:
            loss.backward()
        else:
            t.scaler.scale(loss).backward()
            t.scaler.unscale_(t.optimizer)
        if s.clip_grad > 0:
            clip_gradients(t.student, s.clip_grad)
        if epoch < s.freeze_last_layer:
            cancel_last_layer_gradients(t.student)
        if t.scaler is None:
            t.optimizer.step()
        else:
            t.scaler.step(t.optimizer)
            t.scaler.update()
        ema_update(t.teacher, t.student, float(t.momentum[it]))

        seen += views[0].shape[0] * world
        loss_value = mean_over_ranks(loss, run.dist)  # the loss of the global batch, not rank 0's share
        loss_sum, loss_n = loss_sum + loss_value.item(), loss_n + 1
        epoch_loss, epoch_n = epoch_loss + loss_value.item(), epoch_n + 1
        progress.advance(task)
        done = i + 1
        if run.log is not None and (done % cfg.log_every == 0 or done == t.iters):
            elapsed = time.perf_counter() - t0
            run.log_row(it + 1, epoch=epoch, loss=loss_sum / loss_n, lr=float(t.lr[it]), wd=float(t.wd[it]),
                        teacher_momentum=float(t.momentum[it]), teacher_temp=t.dino_loss.teacher_temp(epoch),
                        images_per_s=seen / max(elapsed, 1e-9), skipped_images=pool.num_skipped)
            loss_sum, loss_n = 0.0, 0
            progress.update(task, description=f"DINO epoch {epoch + 1}/{s.epochs} "
                                              f"loss {loss_value.item():.3f} {seen / max(elapsed, 1e-9):.1f} img/s")
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < t.iters:
            save(epoch, done, False)
    elapsed = time.perf_counter() - t0
    return epoch_loss / max(epoch_n, 1), seen, it, elapsed


def pretrain(cfg: PretrainConfig, resume: bool = False, force: bool = False) -> Path:
    """Run (or resume) DINO pre-training; returns the run folder (``last.pt``, ``last.safetensors``,
    ``log.csv``, ``config.yaml``, ``skipped.txt`` when corrupt images were met)."""
    from reidkit.models import ReIDModel

    run = start(cfg, resume, force, PretrainError, tensorboard=False)
    d, device, out = run.dist, run.device, run.out

    # data
    paths = pool_paths(cfg.data)
    pool = MultiCropPool(paths, MultiCropDraws(cfg.crops) if cfg.data.device_augment else MultiCrop(cfg.crops),
                         seed=cfg.seed)
    loader, sampler = sharded_loader(pool, cfg.data.batch_size, d.rank, d.world, seed=cfg.seed,
                                     num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
                                     what="the pool", error=PretrainError)
    iters = sampler.batches_per_epoch

    # student, teacher, loss, optimiser, schedules
    student, teacher, model_config = build_student_teacher(cfg)
    seed_everything(cfg.seed + d.rank)  # then each rank its own drop-path noise
    if d.world > 1 and device.type == "cuda":  # BN in the ICS stem: one statistic over all GPUs
        student = nn.SyncBatchNorm.convert_sync_batchnorm(student)
        teacher = nn.SyncBatchNorm.convert_sync_batchnorm(teacher)
    student.to(device), teacher.to(device)
    s = cfg.solver
    global_batch = cfg.data.batch_size * d.world
    t = DINOTrainer(student, maybe_compile(wrap_ddp(student, d, device), cfg.compile), teacher,
                    DINOLoss(cfg.head.out_dim, cfg.crops.num_views, s.epochs, cfg.loss.teacher_temp,
                             cfg.loss.warmup_teacher_temp, cfg.loss.warmup_teacher_temp_epochs,
                             cfg.loss.student_temp, cfg.loss.center_momentum).to(device),
                    torch.optim.AdamW(dino_param_groups(student), fused=device.type == "cuda" or None),
                    torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None,
                    cosine_iter_schedule(s.lr * global_batch / 256, s.min_lr, s.epochs, iters, s.warmup_epochs),
                    cosine_iter_schedule(s.weight_decay, s.weight_decay_end, s.epochs, iters),
                    cosine_iter_schedule(s.momentum_teacher, 1.0, s.epochs, iters), iters,
                    DeviceMultiCrop(cfg.crops).to(device) if cfg.data.device_augment else None)

    start_epoch, start_iter = 0, 0
    state = run.restore(map_location=device)
    if state is not None:
        run.check_steps(state, iters, global_batch)
        student.load_state_dict(state["student"])
        teacher.load_state_dict(state["teacher"])
        t.optimizer.load_state_dict(state["optimizer"])
        t.dino_loss.load_state_dict(state["dino_loss"])
        if t.scaler is not None and state.get("scaler"):
            t.scaler.load_state_dict(state["scaler"])
        start_epoch, start_iter = int(state["epoch"]), int(state["iter_in_epoch"])
        if "rng" in state:
            run.restore_rng(state["rng"])
        run.say(f"resumed {out} at epoch {start_epoch + 1}, iteration {start_iter + 1}")
    run.resume_log(start_epoch * iters + start_iter, None)  # rows come before checkpoints: none to re-add

    def save(epoch: int, iter_in_epoch: int, final_of_epoch: bool) -> None:
        if final_of_epoch and d.main:  # exported BEFORE the RNG is captured: building the model draws from it
            reid = ReIDModel.from_config(model_config)
            reid.backbone.load_state_dict(teacher.backbone.state_dict())
            run.publish(reid, "last.safetensors")
        rngs = run.rng_states()  # every rank's RNG, so drop-path noise resumes exactly on each
        skipped = pool.images.skipped_paths
        if d.world > 1 and final_of_epoch:
            skipped = [p for paths in gather_objects(skipped, d) for p in paths]
        if not d.main:
            return
        if final_of_epoch and skipped:
            atomic_write_text(out / "skipped.txt", "".join(p + "\n" for p in sorted(set(skipped))))
        state = {"student": student.state_dict(), "teacher": teacher.state_dict(),
                 "optimizer": t.optimizer.state_dict(), "dino_loss": t.dino_loss.state_dict(),
                 "scaler": t.scaler.state_dict() if t.scaler is not None else {},
                 "epoch": epoch, "iter_in_epoch": iter_in_epoch, "rng": rngs,
                 "iters_per_epoch": iters, "global_batch": global_batch, "model_config": model_config}
        run.save(state)
        if final_of_epoch and epoch in cfg.keep_epochs:
            run.save(state, f"checkpoint_{epoch:04d}.pt")

    with run.progress() as progress:
        task = progress.add_task("DINO pre-training", total=s.epochs * iters,
                                 completed=start_epoch * iters + start_iter)
        for epoch in range(start_epoch, s.epochs):
            skip = start_iter if epoch == start_epoch else 0
            pool.set_epoch(epoch)
            sampler.set_epoch(epoch, skip)
            loss, seen, it, elapsed = train_one_epoch(run, t, loader, pool, epoch, skip, progress, task, save)
            save(epoch + 1, 0, True)
            if d.main:
                progress.console.print(
                    f"epoch {epoch + 1}/{s.epochs}  loss {loss:.4f}  lr {t.lr[min(it, len(t.lr) - 1)]:.2e}  "
                    f"teacher m {t.momentum[it]:.4f}  {seen / max(elapsed, 1e-9):.1f} img/s  "
                    f"skipped {pool.num_skipped}", highlight=False)
    barrier(d)
    return out


# ----------------------------------------------------------------------------------------------
# 6. From a pre-training checkpoint to backbone weights for fine-tuning
# ----------------------------------------------------------------------------------------------
def infer_preset(tensors: dict[str, torch.Tensor]) -> str:
    """The reidkit preset of an official DINO / TransReID-SSL backbone from its tensors:
    width from ``cls_token`` (384 = ViT-S, 768 = ViT-B), ICS stem from ``patch_embed.conv.*``."""
    cls = next((v for k, v in tensors.items() if k.endswith("cls_token")), None)
    if cls is None:
        raise ValueError("cannot infer the architecture (no cls_token in the checkpoint); pass --preset")
    width = {384: "vit_small", 768: "vit_base", 192: "vit_tiny", 64: "vit_micro"}.get(int(cls.shape[-1]))
    if width is None:
        raise ValueError(f"no preset with embed dim {int(cls.shape[-1])}; pass --preset")
    stem_keys = [k for k in tensors if "patch_embed.conv." in k]
    if stem_keys:  # ICS = IBN (IN + BN halves) in the conv stem; the plain conv stem has BN only
        return width + ("_ics" if any(".IN." in k for k in stem_keys) else "_conv")
    return width


def export_backbone(checkpoint: str | Path, out: str | Path, preset: str | None = None, which: str = "teacher",
                    **overrides):
    """Write ``out`` (a ``save_model`` file) from a DINO checkpoint: ours (``last.pt``, the model
    config is inside) or the official layout (``checkpoint.pth`` with ``teacher``/``student``, or a
    converted flat backbone; the preset is inferred from the tensors unless given).

    The teacher is exported by default, as the official converter does. Returns ``(out, report)``
    with the key-by-key load report of ``reidkit.models.checkpoints``.
    """
    from reidkit.models import ReIDModel, build_model, save_model
    from reidkit.models.checkpoints import load_weights, read_checkpoint, unwrap

    raw = read_checkpoint(checkpoint)
    if isinstance(raw, dict) and isinstance(raw.get("model_config"), dict) and preset is None:
        config = {**raw["model_config"], **overrides}
        model = ReIDModel.from_config(config)
    else:
        preset = preset or infer_preset(unwrap(raw, which)[0])
        model = build_model(preset, num_classes=0, **overrides)
    report = load_weights(model, raw, which=which)
    save_model(model, out)
    return Path(out), report
