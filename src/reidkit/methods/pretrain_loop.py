"""What the CoKe and LOOK pre-training methods share: the view pool, the encoder with its head, and
the resumable training loop. Each method module keeps its story (recipe, head, loss, step); this file
holds the plumbing DINO has inline (``pretrain_dino``), reusing its sampler and helpers.

* ``ViewsData``/``ViewPool``: any reidkit dataset format (``unlabelled`` for a pool, ``market1501``,
  ``msmt17``, ``mm``, ...) -> ``(views, index, label)``; ``views`` are ``num_views`` global crops of
  DINO's multi-crop (seeded by ``(seed, epoch, index)``), ``label`` the relabelled pid (-1 unlabelled);
* ``PretrainNet``: a reidkit backbone + its pooling, and ``head`` (method-specific; dropped by
  ``export-backbone``, as DINO's head is);
* ``run_pretraining``: DDP (torchrun, gloo on CPU), AdamW with per-iteration cosine lr, per-parameter
  clipping, the loss module's state (centres, duals, memories) in ``last.pt``, mid-epoch checkpoints,
  RNG states of every rank: a run killed with SIGKILL and resumed ends bit-identical to an
  uninterrupted one. ``last.safetensors`` is the backbone as a reidkit model after every epoch.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from reidkit.config import to_dict
from reidkit.data.multicrop import MultiCrop, MultiCropConfig
from reidkit.methods.optim import cosine_iter_schedule
from reidkit.methods.pretrain_dino import (ShardedEpochSampler, _dist_info, clip_gradients, param_groups,
                                           resolve_device)
from reidkit.methods.training_run import open_run_folder
from reidkit.utils.checkpoint import CheckpointError, check_finite, load_state, rng_state, save_state, set_rng_state
from reidkit.utils.metric_log import MetricLog
from reidkit.utils.progress import make_progress
from reidkit.utils.seed import seed_everything


@dataclass
class ViewsData:
    format: str = "unlabelled"     # any reidkit.data.datasets format; its train split is used
    root: str = ""
    options: dict = field(default_factory=dict)  # reader options, e.g. {file_list: CFS_list.txt, keep_ratio: 0.5}
    batch_size: int = 64           # per process
    num_workers: int = 8
    num_views: int = 1             # global crops per image and step (1 = single view)


@dataclass
class PretrainModelConfig:
    preset: str = "vit_small"      # any reidkit preset (stem / k-NN attention from the preset or overrides)
    stem: str | None = None
    drop_path_rate: float = 0.1
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class PretrainOptim:
    epochs: int = 100
    lr: float = 5e-4               # per 256 images; peak = lr * global_batch / 256
    min_lr: float = 1e-6
    warmup_epochs: int = 10
    weight_decay: float = 0.05
    clip_grad: float = 3.0         # per-parameter clip; 0 disables


METHODS = ("dino", "coke", "look")


def recipe_method(recipe: str | Path, overrides: list[str] | None = None) -> str:
    """The ``method:`` of a pre-training recipe (after ``_base_`` and ``method=...`` overrides); dino when absent."""
    from reidkit.config import ConfigError, _read_yaml, apply_overrides

    data = apply_overrides(_read_yaml(Path(recipe)), [o for o in overrides or [] if o.startswith("method=")])
    method = str(data.get("method", "dino"))
    if method not in METHODS:
        raise ConfigError(f"{recipe}: method: {method!r} is not a pre-training method; use one of {', '.join(METHODS)}")
    return method


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

    kw = dict(model.overrides, img_size=tuple(img_size))
    if model.stem is not None:
        kw["stem"] = model.stem
    reid = build_model(model.preset, num_classes=0, drop_path_rate=model.drop_path_rate, **kw)
    config = dict(reid.config)
    config["drop_path_rate"] = 0.1  # a sensible default for the fine-tuning that follows
    return reid, config


StepFn = Callable[[list[torch.Tensor], torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, dict[str, float]]]


def run_pretraining(cfg: Any, name: str, resume: bool, check: Callable[[int, torch.Tensor | None], None],
                    build: Callable[[int, torch.Tensor | None], tuple[PretrainNet, nn.Module, dict]],
                    step: Callable[..., tuple[torch.Tensor, dict[str, float]]],
                    end_epoch: Callable[[nn.Module], None] = lambda loss: None) -> Path:
    """The loop of a pre-training method whose recipe has ``output_dir, data (ViewsData), crops,
    model, solver (PretrainOptim), precision, device, seed, log_every, checkpoint_every``.

    ``check(n, labels)`` validates the problem before any model is built; ``build(n, labels)`` returns
    ``(net, loss_module, model_config)``; ``step(net_ddp, loss_module, views, index, labels, epoch)``
    returns ``(loss, extra metrics)``; ``end_epoch(loss_module)`` runs after each epoch.
    """
    from reidkit.models import ReIDModel, save_model

    rank, world, local_rank = _dist_info()
    device = resolve_device(cfg.device, local_rank)
    if cfg.precision == "fp16" and device.type != "cuda":
        raise ValueError("precision 'fp16' needs a CUDA GPU; use precision=bf16 or precision=fp32 on CPU")
    paths, labels = load_pool(cfg.data)
    check(len(paths), labels)  # named errors before any heavy work
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    out = Path(cfg.output_dir)
    ckpt_path = open_run_folder(out, cfg, resume, write=rank == 0)
    seed_everything(cfg.seed)
    pool = ViewPool(paths, labels, cfg.crops, cfg.data.num_views, seed=cfg.seed)
    sampler = ShardedEpochSampler(len(pool), cfg.data.batch_size, rank, world, seed=cfg.seed)
    iters = sampler.batches_per_epoch
    if iters == 0:
        raise ValueError(f"the dataset has {len(pool)} images, fewer than one global batch "
                         f"({cfg.data.batch_size} x {world}); lower data.batch_size")
    loader = torch.utils.data.DataLoader(pool, batch_size=cfg.data.batch_size, sampler=sampler,
                                         num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
                                         drop_last=True)
    net, loss_module, model_config = build(len(pool), labels)
    seed_everything(cfg.seed + rank)
    if world > 1 and device.type == "cuda":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    net.to(device), loss_module.to(device)
    net_ddp = nn.parallel.DistributedDataParallel(net, device_ids=[local_rank] if device.type == "cuda"
                                                  else None) if world > 1 else net
    s = cfg.solver
    optimizer = torch.optim.AdamW(param_groups(net), weight_decay=s.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
    global_batch = cfg.data.batch_size * world
    lr_schedule = cosine_iter_schedule(s.lr * global_batch / 256, s.min_lr, s.epochs, iters, s.warmup_epochs)

    start_epoch, start_iter = 0, 0
    if resume:
        state = load_state(ckpt_path, map_location=device)
        net.load_state_dict(state["model"])
        loss_module.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, start_iter = int(state["epoch"]), int(state["iter_in_epoch"])
        was = (state.get("iters_per_epoch"), state.get("global_batch"))
        if was != (iters, global_batch):
            raise CheckpointError(f"{ckpt_path}: the run had {was[0]} iterations per epoch of {was[1]} images, "
                                  f"now {iters} of {global_batch}; resume with the same data, batch size and "
                                  "number of processes")
        set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
    log = MetricLog(out / "log.csv", tensorboard=False) if rank == 0 else None
    if log is not None:
        log.truncate_after(start_epoch * iters + start_iter)

    def save(epoch: int, iter_in_epoch: int, final_of_epoch: bool) -> None:
        rngs = [rng_state()]
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, rngs[0])
            rngs = gathered
        if rank != 0:
            return
        save_state(ckpt_path, {"model": net.state_dict(), "loss": loss_module.state_dict(),
                               "optimizer": optimizer.state_dict(),
                               "scaler": scaler.state_dict() if scaler is not None else {},
                               "epoch": epoch, "iter_in_epoch": iter_in_epoch, "rng": rngs, "method": name,
                               "iters_per_epoch": iters, "global_batch": global_batch,
                               "config": to_dict(cfg), "model_config": model_config})
        if final_of_epoch:
            reid = ReIDModel.from_config(model_config)
            reid.backbone.load_state_dict(net.backbone.state_dict())
            save_model(reid, out / "last.safetensors")

    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    with make_progress(transient=False) as progress:
        task = progress.add_task(f"{name} pre-training", total=s.epochs * iters,
                                 completed=start_epoch * iters + start_iter)
        for epoch in range(start_epoch, s.epochs):
            skip = start_iter if epoch == start_epoch else 0
            pool.set_epoch(epoch)
            sampler.set_epoch(epoch, skip)
            net.train()
            t0, seen, sums, n_rows = time.perf_counter(), 0, {}, 0
            for i, (views, index, batch_labels) in enumerate(loader, start=skip):
                it = epoch * iters + i
                for group in optimizer.param_groups:
                    group["lr"] = float(lr_schedule[it])
                views = [v.to(device, non_blocking=True) for v in views]
                index, batch_labels = index.to(device), batch_labels.to(device)
                with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                    loss, extra = step(net_ddp, loss_module, views, index, batch_labels, epoch)
                check_finite(loss, f"epoch {epoch}, iteration {i}")
                optimizer.zero_grad(set_to_none=True)
                if scaler is None:
                    loss.backward()
                else:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                if s.clip_grad > 0:
                    clip_gradients(net, s.clip_grad)
                if scaler is None:
                    optimizer.step()
                else:
                    scaler.step(optimizer)
                    scaler.update()
                seen += views[0].shape[0] * world
                value = loss.detach().float()
                if world > 1:
                    dist.all_reduce(value)
                    value /= world
                for k, v in {"loss": value.item(), **extra}.items():
                    sums[k] = sums.get(k, 0.0) + v
                n_rows += 1
                progress.advance(task)
                done = i + 1
                if log is not None and (done % cfg.log_every == 0 or done == iters):
                    elapsed = max(time.perf_counter() - t0, 1e-9)
                    log.log(it + 1, epoch=epoch, lr=float(lr_schedule[it]), images_per_s=seen / elapsed,
                            **{k: v / n_rows for k, v in sums.items()})
                    sums, n_rows = {}, 0
                if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < iters:
                    save(epoch, done, final_of_epoch=False)
            end_epoch(loss_module)
            save(epoch + 1, 0, final_of_epoch=True)
            if rank == 0:
                progress.console.print(f"{name} epoch {epoch + 1}/{s.epochs}  "
                                       f"{seen / max(time.perf_counter() - t0, 1e-9):.1f} img/s", highlight=False)
    if world > 1:
        dist.barrier()
    return out


__all__ = ["METHODS", "recipe_method", "ViewsData", "PretrainModelConfig", "PretrainOptim", "ViewPool", "PretrainNet", "mlp", "build_reid",
           "load_pool", "run_pretraining"]
