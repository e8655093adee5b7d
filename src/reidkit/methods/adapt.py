"""Unsupervised (USL) and domain-adaptive (UDA) re-ID by clustering: the cluster-contrast loop
(TransReID-SSL spec section 6), one readable module.

    from reidkit.config import load_config
    from reidkit.methods.adapt import AdaptConfig, adapt
    cfg = load_config(AdaptConfig, "configs/adapt/market_usl_vit_small_ics.yaml", ["data.root=data/market"])
    run_dir = adapt(cfg)            # adapt(cfg, resume=True) continues a killed run

The story, top to bottom:
  1. recipe  ``AdaptConfig`` (defaults = the paper's: ViT-S, drop-path 0.3, k1=30 k2=6, DBSCAN eps 0.6
             min_samples 4, memory momentum 0.2 temperature 0.05 hard update, batch 256 = 32 x 8,
             200 iterations per epoch, SGD lr 3.5e-4 wd 5e-4, StepLR(20, 0.1), 50 epochs).
  2. start   USL: the pre-trained backbone ``model.weights`` (e.g. DINO). UDA: first the supervised
             source model (``source.config`` is a fine-tuning recipe run by ``finetune.train``, or
             ``source.model`` an existing model file); its backbone is kept, the BNNeck re-initialised.
  3. epoch   extract L2-normalised features of the unlabelled target train set (test transform)
             -> sparse k-reciprocal Jaccard -> DBSCAN (outliers dropped; optional Dash filter)
             -> memory = normalised cluster means -> ``iters`` steps with the camera-aware P x K
             sampler over pseudo-labels, loss = ClusterMemory(normalize(BN feature)).
  4. log     clusters, outliers, memory size, (pseudo-label quality when train labels exist),
             loss, lr, speed, target mAP every ``eval.every`` epochs; atomic ``last.pt`` each epoch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from reidkit.config import to_dict
from reidkit.data.pseudo_sampler import CameraAwarePKSampler
from reidkit.data.train_loader import CacheMode, CachedImages, SeededSamples, cache_bytes, default_num_workers
from reidkit.data.transforms import build_usl_test_transform, build_usl_train_transform, split_resize
from reidkit.losses.cluster_memory import ClusterMemory, cluster_centroids
from reidkit.methods.pseudo_labels import (ClusterConfig, DashThreshold, cluster, label_quality,
                                           memory_losses)
from reidkit.methods.training_run import (autocast_dtype, eval_due, evaluate_query_gallery, keep_best,
                                          open_run_folder, say)
from reidkit.utils.checkpoint import NonFiniteLossError, load_state, rng_state, save_state, set_rng_state
from reidkit.utils.io import save_json
from reidkit.utils.metric_log import MetricLog
from reidkit.utils.progress import make_progress
from reidkit.utils.seed import seed_everything


class AdaptError(ValueError):
    """An adaptation setup that cannot run (missing data, bad source model, existing run folder...)."""


# ---------------------------------------------------------------------------------------------
# 1. the recipe


@dataclass
class AdaptDataConfig:
    format: str = "market1501"      # the target dataset (its train split is used WITHOUT labels)
    root: str = ""
    options: dict = field(default_factory=dict)
    size: tuple[int, int] = (256, 128)
    batch_size: int = 256           # P x K: 32 pseudo-ids x 8
    num_instances: int = 8
    num_workers: int = -1
    cache: CacheMode = "auto"       # decoded + resized train images in memory (also used to extract)
    cache_max_gb: float = 4.0
    on_error: Literal["skip", "raise"] = "skip"
    quality: bool = True            # log pseudo-label quality when the train split has identity labels


@dataclass
class SourceConfig:
    config: str | None = None       # UDA: a fine-tuning recipe YAML trained first on the labelled source
    overrides: list[str] = field(default_factory=list)
    model: str | None = None        # UDA: or an existing source model (.safetensors or a run folder)


@dataclass
class AdaptModelConfig:
    preset: str = "vit_small"
    weights: str | None = None      # USL: pre-trained backbone (DINO / official / timm / ours)
    drop_path_rate: float = 0.3     # cluster-contrast's TransReID default
    overrides: dict = field(default_factory=dict)


@dataclass
class MemoryConfig:
    temperature: float = 0.05
    momentum: float = 0.2           # weight of the OLD memory entry
    update: Literal["hard", "mean"] = "hard"


@dataclass
class AdaptSolverConfig:
    lr: float = 3.5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 50
    iters: int = 200                # training iterations per epoch (per re-clustering)
    step_size: int = 20             # StepLR, per epoch
    gamma: float = 0.1
    grad_clip: float = 0.0
    amp: Literal["none", "bf16", "fp16"] = "none"


@dataclass
class AdaptTrainConfig:
    seed: int = 1
    device: str = "auto"
    deterministic: bool = False
    log_every: int = 10
    extract_batch_size: int = 256


@dataclass
class AdaptEvalConfig:
    enabled: bool = True
    every: int = 10                 # evaluate on the target query/gallery every N epochs and at the end
    batch_size: int = 256
    metric: Literal["cosine", "euclidean"] = "cosine"
    protocol: Literal["market", "cuhk03", "no-camera"] = "market"


@dataclass
class AdaptConfig:
    mode: Literal["usl", "uda"] = "usl"
    data: AdaptDataConfig = field(default_factory=AdaptDataConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    model: AdaptModelConfig = field(default_factory=AdaptModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    solver: AdaptSolverConfig = field(default_factory=AdaptSolverConfig)
    train: AdaptTrainConfig = field(default_factory=AdaptTrainConfig)
    eval: AdaptEvalConfig = field(default_factory=AdaptEvalConfig)
    output: str = "runs/adapt"


# ---------------------------------------------------------------------------------------------
# 2. the starting model


def _source_model_file(cfg: AdaptConfig, out: Path, resume: bool) -> Path:
    """UDA: the supervised source model (trained here first when ``source.config`` is given)."""
    src = cfg.source
    if src.model:
        p = Path(src.model)
        if p.is_dir():
            for name in ("best.safetensors", "last.safetensors"):
                if (p / name).is_file():
                    return p / name
            raise AdaptError(f"{p}: no best.safetensors or last.safetensors in this run folder")
        if not p.is_file():
            raise AdaptError(f"source.model={p}: no such file")
        return p
    if not src.config:
        raise AdaptError("mode=uda needs source.config (a fine-tuning recipe to train on the labelled source) "
                         "or source.model (an already trained source model)")
    from reidkit.config import load_config
    from reidkit.methods.finetune import FinetuneConfig, train

    run = out / "source"
    if (run / "summary.json").is_file():
        say(f"source model already trained: {run}")
    else:
        scfg = load_config(FinetuneConfig, src.config, [*src.overrides, f"output={run}"])
        say(f"UDA step 1/2: supervised training on the source ({scfg.data.format} at {scfg.data.root})")
        train(scfg, resume=(run / "last.pt").is_file())
    for name in ("best.safetensors", "last.safetensors"):
        if (run / name).is_file():
            return run / name
    raise AdaptError(f"{run}: the source training wrote no model")


def build_start_model(cfg: AdaptConfig, source_file: Path | None) -> nn.Module:
    """The model to adapt: ``neck_feat='after'`` (the BN feature is clustered, trained and tested)."""
    from reidkit.models import build_model, load_model

    overrides = {"img_size": tuple(cfg.data.size), "drop_path_rate": cfg.model.drop_path_rate,
                 "neck_feat": "after", **cfg.model.overrides}
    model = build_model(cfg.model.preset, num_classes=0, **overrides)
    if source_file is not None:
        src = load_model(source_file)
        try:  # backbone only: the classifier and the BNNeck are re-initialised (cluster-contrast load_param)
            model.backbone.load_state_dict(src.backbone.state_dict())
        except RuntimeError as e:
            raise AdaptError(f"{source_file}: its backbone does not fit model.preset={cfg.model.preset} "
                             f"{cfg.model.overrides}: {str(e).splitlines()[0]}") from None
    elif cfg.model.weights:
        from reidkit.models.checkpoints import load_weights
        load_weights(model, cfg.model.weights)
    return model


# ---------------------------------------------------------------------------------------------
# 3. features


@torch.no_grad()
def _extract_cached(model: nn.Module, images: np.ndarray, batch: int, device, amp) -> np.ndarray:
    """Features of the cached (N, H, W, 3) uint8 images: the test transform is resize (already done,
    bicubic) -> ToTensor -> Normalize(0.5, 0.5), so only the last two steps run here."""
    model.eval()
    out = []
    for s in range(0, len(images), batch):
        x = torch.from_numpy(images[s:s + batch]).to(device).permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - 0.5) / 0.5
        with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            f = model(x)
        out.append(F.normalize(f.float(), dim=1).cpu().numpy())
    return np.concatenate(out)


def _extract(model, train_set, records, cfg: AdaptConfig, device, amp) -> np.ndarray:
    """(N, D) L2-normalised features of the train records, in record order."""
    if isinstance(train_set, CachedImages):
        return _extract_cached(model, train_set.images, cfg.train.extract_batch_size, device, amp)
    from reidkit.evaluation.extract import extract_features

    fs = extract_features(model, records, transform=build_usl_test_transform(cfg.data.size),
                          batch_size=cfg.train.extract_batch_size, device=device, amp_dtype=amp,
                          normalize=True, description="extract train")
    if len(fs.features) == len(records):
        return fs.features
    row = {p: i for i, p in enumerate(fs.paths)}  # corrupt images were dropped: zero rows, never clustered
    feats = np.zeros((len(records), fs.features.shape[1]), dtype=np.float32)
    for i, r in enumerate(records):
        if r.path in row:
            feats[i] = fs.features[row[r.path]]
    return feats


def evaluate_target(model, dataset, cfg: AdaptConfig, device, amp) -> dict[str, float]:
    """mAP, R1, R5, R10, mINP (percent) on the target query / gallery."""
    return evaluate_query_gallery(model, dataset, build_usl_test_transform(cfg.data.size), cfg.eval.batch_size,
                                  device, cfg.eval.metric, cfg.eval.protocol, amp=amp)


# ---------------------------------------------------------------------------------------------
# 4. the loop


def _check(cfg: AdaptConfig) -> None:
    d, s = cfg.data, cfg.solver
    if d.batch_size % d.num_instances:
        raise AdaptError(f"data.batch_size={d.batch_size} must be a multiple of num_instances={d.num_instances}")
    if s.epochs < 1 or s.iters < 1:
        raise AdaptError(f"solver.epochs and solver.iters must be >= 1, got {s.epochs}, {s.iters}")
    if cfg.mode == "usl" and (cfg.source.config or cfg.source.model):
        raise AdaptError("source.* is for mode=uda; set mode=uda or drop the source settings")
    if not d.root:
        raise AdaptError("data.root is not set: give the target dataset folder, e.g. `data.root=data/market1501`")
    cfg.cluster.validate()


def _device(pref: str) -> torch.device:
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(pref)


def adapt(cfg: AdaptConfig, resume: bool = False) -> Path:
    """Run USL / UDA by clustering and return the run folder (config.yaml, log.csv, last.pt,
    last/best.safetensors, summary.json; ``source/`` holds the UDA source run). ``resume=True``
    continues from ``last.pt`` (the epoch in progress restarts, with the same result as an
    uninterrupted run). Raises ``NonFiniteLossError`` on a NaN/inf loss (the last good state stays)."""
    from reidkit.data.datasets import load_dataset
    from reidkit.data.image_dataset import ImageDataset
    from reidkit.models import save_model

    _check(cfg)
    out = Path(cfg.output)
    state_path = open_run_folder(out, cfg, resume, AdaptError)
    device = _device(cfg.train.device)
    amp = autocast_dtype(cfg.solver.amp, device, AdaptError)

    source_file = _source_model_file(cfg, out, resume) if cfg.mode == "uda" else None
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    dataset = load_dataset(cfg.data.format, cfg.data.root, **cfg.data.options)
    records = list(dataset.train)
    if len(records) < cfg.cluster.min_samples:
        raise AdaptError(f"{cfg.data.root}: {len(records)} training images, too few to cluster")
    camids = np.array([r.camid for r in records], dtype=np.int64)
    true_pids = np.array([r.pid for r in records], dtype=np.int64)
    has_truth = cfg.data.quality and bool((true_pids >= 0).all())

    # data: the train images (cached decoded when they fit) and the camera-aware sampler
    size = tuple(cfg.data.size)
    train_tf = build_usl_train_transform(size)
    workers = default_num_workers() if cfg.data.num_workers < 0 else cfg.data.num_workers
    fits = cache_bytes(len(records), size) <= cfg.data.cache_max_gb * 2**30
    if cfg.data.cache == "memory" or (cfg.data.cache == "auto" and fits):
        resize, augment = split_resize(train_tf)
        train_set = CachedImages(records, resize, augment, workers, cfg.data.on_error)
    else:
        train_set = ImageDataset(records, train_tf, on_error=cfg.data.on_error)
    sampler = CameraAwarePKSampler(np.zeros(len(records), dtype=np.int64), camids, cfg.data.batch_size,
                                   cfg.data.num_instances, cfg.solver.iters, seed=cfg.train.seed, with_seeds=True)
    loader = DataLoader(SeededSamples(train_set), batch_sampler=sampler, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                        prefetch_factor=4 if workers > 0 else None,
                        generator=torch.Generator().manual_seed(cfg.train.seed))

    # model, memory, optimiser
    model = build_start_model(cfg, source_file).to(device)
    use_cams = getattr(model.spec, "sie_cameras", 0) > 0
    memory = ClusterMemory(model.feat_dim, 0, cfg.memory.temperature, cfg.memory.momentum,
                           cfg.memory.update).to(device)
    s = cfg.solver
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    dash = DashThreshold(cfg.cluster.dash_c, cfg.cluster.dash_gamma, cfg.cluster.dash_rho_min) \
        if cfg.cluster.filter == "dash" else None

    start_epoch, best = 0, {"mAP": -1.0, "epoch": 0}
    log = MetricLog(out / "log.csv")
    if resume:
        state = load_state(state_path, map_location="cpu")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best = int(state["epoch"]), dict(state["best"])
        if dash is not None and state.get("dash"):
            dash.load_state_dict(state["dash"])
        set_rng_state(state["rng"])
        say(f"resumed {out} after epoch {start_epoch}")
    log.truncate_after(start_epoch)  # drop the rows of an epoch that was logged but not saved (all when starting)

    summary: dict[str, Any] = {"mode": cfg.mode, "num_train_images": len(records), "device": str(device),
                               "source_model": str(source_file) if source_file else None}
    last_metrics: dict[str, float] = {}
    if start_epoch == 0 and cfg.eval.enabled and dataset.query and dataset.gallery:
        summary["initial"] = evaluate_target(model, dataset, cfg, device, amp)
        say(f"before adaptation: mAP {summary['initial']['mAP']:.1f} R1 {summary['initial']['R1']:.1f}")

    with make_progress(transient=False) as bar:
        task = bar.add_task("adapt", total=(s.epochs - start_epoch) * s.iters)
        for epoch in range(start_epoch, s.epochs):
            t0 = time.perf_counter()
            # (1-3) features -> Jaccard -> DBSCAN
            feats = _extract(model, train_set, records, cfg, device, amp)
            t_extract = time.perf_counter() - t0
            labels = cluster(feats, cfg.cluster, camids)
            skipped = getattr(train_set, "skipped_paths", None)
            if skipped:
                bad = set(skipped)
                labels[[i for i, r in enumerate(records) if r.path in bad]] = -1
            t_cluster = time.perf_counter() - t0 - t_extract
            n_clusters = int(labels.max()) + 1
            if n_clusters < 1:
                raise AdaptError(f"epoch {epoch + 1}: DBSCAN found no cluster (all {len(labels)} samples are "
                                 f"outliers); raise cluster.eps (now {cfg.cluster.eps}) or lower min_samples")
            if n_clusters == 1:
                say(f"[yellow]warning:[/] epoch {epoch + 1}: DBSCAN put every clustered sample in ONE cluster, "
                    f"so the contrastive loss is 0 this epoch; lower cluster.eps (now {cfg.cluster.eps}) or k1")
            # (4) memory = normalised cluster means
            feats_t = torch.from_numpy(feats).to(device)
            labels_t = torch.from_numpy(labels).to(device)
            memory.reset(cluster_centroids(feats_t, labels_t, n_clusters))
            train_labels = labels.copy()
            row: dict[str, float] = {"clusters": n_clusters, "outliers": int((labels < 0).sum()),
                                     "memory_size": memory.num_clusters}
            if dash is not None:  # Dash: keep clustered samples whose memory loss is under rho_t
                inl = np.flatnonzero(labels >= 0)
                losses = memory_losses(feats_t[inl], labels_t[inl], memory.features, memory.temperature)
                keep = dash.select(losses.cpu().numpy(), epoch + 1)
                if keep.any():
                    train_labels[inl[~keep]] = -1
                row.update(dash_threshold=dash.threshold(epoch + 1), dash_kept=float(keep.mean()))
            if has_truth:
                row.update({f"pl_{k}": v for k, v in label_quality(labels, true_pids).items()
                            if k not in ("outliers",)})
            sampler.set_labels(train_labels, camids)
            sampler.set_epoch(epoch)

            # (5) train
            lr = s.lr * s.gamma ** (epoch // s.step_size)
            for g in optimizer.param_groups:
                g["lr"] = lr
            model.train()
            labels_dev = torch.from_numpy(train_labels).to(device)
            loss_sum, n_batches, n_images, t1 = 0.0, 0, 0, time.perf_counter()
            for it, (imgs, _, cams, idx) in enumerate(loader):
                imgs = imgs.to(device, non_blocking=True)
                targets = labels_dev[idx.to(device)]
                with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                    feat = model.global_feature(imgs, cams.to(device) if use_cams else None)
                    bn, _ = model.head(feat)
                loss = memory(bn.float(), targets)
                if not torch.isfinite(loss.detach()):
                    kept = "the last good checkpoint is kept" if state_path.exists() else "no checkpoint yet"
                    raise NonFiniteLossError(f"loss became {float(loss.detach())} at epoch {epoch + 1}, "
                                             f"iteration {it + 1}; stopping ({kept}). Lower solver.lr or set "
                                             "solver.grad_clip.")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if s.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
                optimizer.step()
                loss_sum += float(loss.detach())
                n_batches += 1
                n_images += imgs.shape[0]
                bar.advance(task)
                if it % cfg.train.log_every == 0 or it == s.iters - 1:
                    bar.update(task, description=f"epoch {epoch + 1}/{s.epochs} loss {loss_sum / n_batches:.3f}")
            t_train = time.perf_counter() - t1
            row.update(loss=loss_sum / max(n_batches, 1), lr=lr, images_per_s=n_images / max(t_train, 1e-9),
                       extract_s=t_extract, cluster_s=t_cluster, train_s=t_train)

            # evaluate, publish models, save the state
            if cfg.eval.enabled and dataset.query and dataset.gallery and \
                    eval_due(epoch + 1, s.epochs, cfg.eval.every):
                last_metrics = evaluate_target(model, dataset, cfg, device, amp)
                row.update(last_metrics)
                best = keep_best(model, last_metrics, best, epoch + 1, out)
            save_model(model, out / "last.safetensors")
            state = {"epoch": epoch + 1, "best": best, "rng": rng_state(), "model": model.state_dict(),
                     "optimizer": optimizer.state_dict(), "dash": dash.state_dict() if dash else None,
                     "config": to_dict(cfg)}
            save_state(state_path, state)
            log.log(epoch + 1, **row)
            bar.console.print(_epoch_line(epoch + 1, s.epochs, row), highlight=False)

    summary.update(best_mAP=best["mAP"], best_epoch=best["epoch"], final=last_metrics)
    save_json(out / "summary.json", summary)
    return out


def _epoch_line(epoch: int, epochs: int, row: dict) -> str:
    parts = [f"epoch {epoch}/{epochs}", f"clusters {row['clusters']}", f"outliers {row['outliers']}",
             f"memory {row['memory_size']}", f"loss {row['loss']:.3f}"]
    if "dash_kept" in row:
        parts.append(f"dash kept {row['dash_kept'] * 100:.0f}%")
    if "pl_ari" in row:
        parts.append(f"PL ARI {row['pl_ari']:.3f} NMI {row['pl_nmi']:.3f} P/R {row['pl_pair_precision']:.2f}/"
                     f"{row['pl_pair_recall']:.2f} ({row['clusters']} vs {row['pl_true_ids']} ids)")
    parts += [f"lr {row['lr']:.1e}", f"{row['images_per_s']:.0f} img/s",
              f"extract {row['extract_s']:.0f}s cluster {row['cluster_s']:.0f}s"]
    if "mAP" in row:
        parts.append(f"[bold]mAP {row['mAP']:.1f} R1 {row['R1']:.1f}[/]")
    return "  ".join(parts)


__all__ = ["AdaptConfig", "AdaptDataConfig", "SourceConfig", "AdaptModelConfig", "MemoryConfig",
           "AdaptSolverConfig", "AdaptTrainConfig", "AdaptEvalConfig", "AdaptError", "adapt",
           "build_start_model", "evaluate_target"]
