"""What the CoKe and LOOK pre-training methods share: the view pool, the encoder with its head, and
the resumable training loop. Each method module keeps its story (recipe, head, loss, step); this file
holds the plumbing DINO has inline (``pretrain_dino``), on the same sampler (``data.samplers``) and
optimiser helpers (``methods.optim``).

* ``ViewsData``/``ViewPool``: any reidkit dataset format (``unlabelled`` for a pool, ``market1501``,
  ``msmt17``, ``mm``, ...) -> ``(views, index, label)``; ``views`` are ``num_views`` global crops of
  DINO's multi-crop (seeded by ``(seed, epoch, index)``), ``label`` the relabelled pid (-1 unlabelled);
* ``PretrainNet``: a reidkit backbone + its pooling, and ``head`` (method-specific; dropped by
  ``export-backbone``, as DINO's head is);
* ``ViewsRecipe``: the recipe both methods share, on the engine's vocabulary (``RunRecipe``: output,
  seed, device, precision, ...; ``ModelRecipe`` typed model knobs);
* ``train_one_epoch`` and ``run_pretraining``: the step loop and the short main loop on
  ``reidkit.engine`` (device/DDP, precision, NaN guard, atomic checksummed state, log, resume with the
  recipe diff): AdamW with per-iteration cosine lr, per-parameter clipping, the loss module's state
  (centres, duals, memories) in ``last.pt``, mid-epoch checkpoints, RNG states of every rank: a run
  killed with SIGKILL and resumed ends bit-identical to an uninterrupted one. ``last.safetensors`` is
  the backbone as a reidkit model after every epoch.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from reidkit.data.multicrop import MultiCrop
from reidkit.data.multicrop_config import MultiCropConfig
from reidkit.data.samplers import sharded_loader
from reidkit.engine.distributed import barrier, mean_over_ranks, wrap_ddp
from reidkit.engine.precision import autocast, grad_scaler, maybe_compile, to_device
from reidkit.engine.run import Run, start
from reidkit.methods.optim import clip_gradients, cosine_iter_schedule, dino_param_groups
from reidkit.recipes.pretrain_views import PretrainModelConfig, PretrainOptim, ViewsData, ViewsRecipe  # noqa: F401
from reidkit.utils.seed import seed_everything


def load_pool(data: ViewsData) -> tuple[list[str], torch.Tensor | None]:
    """Paths of the train split and their relabelled pids (0..C-1), or None when unlabelled."""
    from reidkit.data.datasets import load_dataset
    from reidkit.data.records import relabel

    if not data.root:
        raise ValueError("data.root is empty: give the dataset folder")
    train = load_dataset(data.format, data.root, **data.options).train
    if not train:
        raise ValueError(f"{data.root}: the train split of format {data.format!r} is empty")
    paths = [r.path for r in train]
    if all(r.pid < 0 for r in train):
        return paths, None
    return paths, torch.tensor([r.pid for r in relabel(train)], dtype=torch.long)


class ViewPool(torch.utils.data.Dataset):
    """``pool[i] -> (views, i, label)``: the first ``num_views`` global crops of DINO's multi-crop."""

    def __init__(self, paths: list[str], labels: torch.Tensor | None, crops: MultiCropConfig, num_views: int,
                 seed: int = 0):
        from reidkit.data.image_dataset import UnlabelledImageDataset

        if not 1 <= num_views <= 2:
            raise ValueError(f"data.num_views={num_views}: 1 (single view) or 2 (two global crops)")
        crops = MultiCropConfig(**{**vars(crops), "local_crops_number": 0})
        self.images = UnlabelledImageDataset(paths, transform=None, on_error="skip")
        self.multicrop, self.labels, self.num_views, self.seed, self.epoch = MultiCrop(crops), labels, num_views, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        img, _ = self.images[index]
        rng = random.Random((self.seed * 1_000_003 + self.epoch) * 2**32 + index)
        label = int(self.labels[index]) if self.labels is not None else -1
        return self.multicrop(img, rng)[: self.num_views], index, label


class PretrainNet(nn.Module):
    """A reidkit backbone with its pooling, and a method head:
    ``forward(views) = head(features (V, B, D))``, so DDP sees the whole step's graph."""

    def __init__(self, reid: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.pool, self.head = reid.backbone, reid.pool, head

    def features(self, views: list[torch.Tensor]) -> torch.Tensor:
        x = self.backbone.forward_features(torch.cat(views))
        if x.ndim == 4:
            x = x.flatten(2).transpose(1, 2)
        return self.pool(x).view(len(views), views[0].shape[0], -1)

    def forward(self, views: list[torch.Tensor]):
        return self.head(self.features(views))


def mlp(dims: list[int], last_bn: bool = False) -> nn.Sequential:
    """Linear-BN-ReLU blocks, a plain Linear at the end (then BN when ``last_bn``)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(a, b, bias=last and not last_bn))
        if not last:
            layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(b, affine=False))
    return nn.Sequential(*layers)


def build_reid(model: PretrainModelConfig, img_size: tuple[int, int]):
    """The reidkit model whose backbone is pre-trained, and the config that rebuilds it for fine-tuning."""
    from reidkit.models import build_model

    kw = model.knobs()
    kw["img_size"] = tuple(model.img_size or img_size)
    reid = build_model(model.preset, num_classes=0, **kw)
    config = dict(reid.config)
    config["drop_path_rate"] = 0.1  # a sensible default for the fine-tuning that follows
    return reid, config


@dataclass
class Trainer:
    """What ``train_one_epoch`` steps: the network (+ its DDP wrapper), the loss module, the optimiser."""

    net: PretrainNet
    net_ddp: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler    # enabled for fp16 only
    lr: Any                        # (epochs * iters,) array
    iters: int
    step: Callable[..., tuple[torch.Tensor, dict[str, float]]]  # (net_ddp, loss_fn, views, index, labels, epoch)


def train_one_epoch(run: Run, t: Trainer, loader, epoch: int, skip: int, progress, task, name: str,
                    save: Callable[[int, int, bool], None]) -> tuple[int, float]:
    """One epoch from iteration ``skip`` on; returns (images seen, seconds)."""
    cfg, s, device = run.cfg, run.cfg.solver, run.device
    t.net.train()
    t0, seen, sums, n_rows = time.perf_counter(), 0, {}, 0
    for i, (views, index, labels) in enumerate(loader, start=skip):
        it = epoch * t.iters + i
        for group in t.optimizer.param_groups:
            group["lr"] = float(t.lr[it])
        views, index, labels = to_device(views, device), to_device(index, device), to_device(labels, device)
        with autocast(device, run.amp):
            loss, extra = t.step(t.net_ddp, t.loss_fn, views, index, labels, epoch)
        run.guard(loss, f"epoch {epoch}, iteration {i}", "Lower solver.lr or raise solver.warmup_epochs.")
        t.optimizer.zero_grad(set_to_none=True)
        t.scaler.scale(loss).backward()  # the scaler is disabled (a pass-through) unless fp16
        t.scaler.unscale_(t.optimizer)
        if s.clip_grad > 0:
            clip_gradients(t.net, s.clip_grad)
        t.scaler.step(t.optimizer)
        t.scaler.update()
        seen += views[0].shape[0] * run.dist.world
        for k, v in {"loss": mean_over_ranks(loss, run.dist).item(), **extra}.items():
            sums[k] = sums.get(k, 0.0) + v
        n_rows += 1
        progress.advance(task)
        done = i + 1
        if done % cfg.log_every == 0 or done == t.iters:
            elapsed = max(time.perf_counter() - t0, 1e-9)
            run.log_row(it + 1, epoch=epoch, lr=float(t.lr[it]), images_per_s=seen / elapsed,
                        **{k: v / n_rows for k, v in sums.items()})
            progress.update(task, description=f"{name} epoch {epoch + 1}/{s.epochs} loss {sums['loss'] / n_rows:.3f}")
            sums, n_rows = {}, 0
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < t.iters:
            save(epoch, done, False)
    return seen, time.perf_counter() - t0


def run_pretraining(cfg: ViewsRecipe, name: str, resume: bool, force: bool,
                    check: Callable[[int, torch.Tensor | None], None],
                    build: Callable[[int, torch.Tensor | None], tuple[PretrainNet, nn.Module, dict]],
                    step: Callable[..., tuple[torch.Tensor, dict[str, float]]],
                    end_epoch: Callable[[nn.Module], None] = lambda loss: None) -> Path:
    """The main loop of a pre-training method. ``check(n, labels)`` validates the problem on the parsed
    data before the run folder is opened; ``build(n, labels)`` returns ``(net, loss_module,
    model_config)``; ``step`` runs one forward + loss; ``end_epoch(loss_module)`` after each epoch."""
    from reidkit.models import ReIDModel

    cfg.check_recipe()  # the recipe's own values before any data is read (also for callers without load_config)
    paths, labels = load_pool(cfg.data)
    check(len(paths), labels)  # named errors before any run folder, model or process group
    run = start(cfg, resume, force, ValueError, tensorboard=False)
    d, device = run.dist, run.device
    pool = ViewPool(paths, labels, cfg.crops, cfg.data.num_views, seed=cfg.seed)
    loader, sampler = sharded_loader(pool, cfg.data.batch_size, d.rank, d.world, seed=cfg.seed,
                                     num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda")
    iters = sampler.batches_per_epoch
    net, loss_fn, model_config = build(len(pool), labels)
    seed_everything(cfg.seed + d.rank)  # then each rank its own drop-path noise
    if d.world > 1 and device.type == "cuda":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    net.to(device), loss_fn.to(device)
    s, global_batch = cfg.solver, cfg.data.batch_size * d.world
    t = Trainer(net, maybe_compile(wrap_ddp(net, d, device), cfg.compile), loss_fn,
                torch.optim.AdamW(dino_param_groups(net), weight_decay=s.weight_decay),
                grad_scaler(run.amp),
                cosine_iter_schedule(s.lr * global_batch / 256, s.min_lr, s.epochs, iters, s.warmup_epochs),
                iters, step)

    start_epoch, start_iter = 0, 0
    state = run.restore(map_location=device)
    if state is not None:
        run.check_steps(state, iters, global_batch)
        net.load_state_dict(state["model"])
        loss_fn.load_state_dict(state["loss"])
        t.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            t.scaler.load_state_dict(state["scaler"])
        start_epoch, start_iter = int(state["epoch"]), int(state["iter_in_epoch"])
        run.restore_rng(state["rng"])
        run.say(f"resumed {run.out} at epoch {start_epoch + 1}, iteration {start_iter + 1}")
    run.resume_log(start_epoch * iters + start_iter, None)

    def save(epoch: int, iter_in_epoch: int, final_of_epoch: bool) -> None:
        if final_of_epoch and d.main:  # exported BEFORE the RNG is captured: building the model draws from it
            reid = ReIDModel.from_config(model_config)
            reid.backbone.load_state_dict(net.backbone.state_dict())
            run.publish(reid, "last.safetensors")
        rngs = run.rng_states()
        run.save({"model": net.state_dict(), "loss": loss_fn.state_dict(), "optimizer": t.optimizer.state_dict(),
                  "scaler": t.scaler.state_dict(), "epoch": epoch,
                  "iter_in_epoch": iter_in_epoch, "rng": rngs, "method": name, "iters_per_epoch": iters,
                  "global_batch": global_batch, "model_config": model_config})

    with run.progress() as progress:
        task = progress.add_task(f"{name} pre-training", total=s.epochs * iters,
                                 completed=start_epoch * iters + start_iter)
        for epoch in range(start_epoch, s.epochs):
            skip = start_iter if epoch == start_epoch else 0
            pool.set_epoch(epoch)
            sampler.set_epoch(epoch, skip)
            seen, elapsed = train_one_epoch(run, t, loader, epoch, skip, progress, task, name, save)
            end_epoch(loss_fn)
            save(epoch + 1, 0, True)
            run.say(f"{name} epoch {epoch + 1}/{s.epochs}  {seen / max(elapsed, 1e-9):.1f} img/s")
    barrier(d)
    return run.out


__all__ = ["ViewsData", "ViewsRecipe", "PretrainModelConfig", "PretrainOptim", "ViewPool", "PretrainNet", "mlp",
           "build_reid", "load_pool", "Trainer", "train_one_epoch", "run_pretraining"]
