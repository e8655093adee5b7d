"""Unsupervised (USL) and domain-adaptive (UDA) re-ID by clustering: the cluster-contrast loop
(Dai et al. 2021, "Cluster contrast for unsupervised person re-identification", as run by
TransReID-SSL, He et al. 2021, §4.3), one readable module.

    from reidkit.config import load_config
    from reidkit.methods.adapt import AdaptConfig, adapt
    cfg = load_config(AdaptConfig, "configs/adapt/market_usl_vit_small_ics.yaml", ["data.root=data/market"])
    run_dir = adapt(cfg)            # adapt(cfg, resume=True) continues a killed run

The story, top to bottom:
  1. recipe  ``AdaptConfig`` (defaults = the paper's: ViT-S, drop-path 0.3, k1=30 k2=6, DBSCAN eps 0.6
             min_samples 4, memory momentum 0.2 temperature 0.05 hard update, batch 256 = 32 x 8,
             200 iterations per epoch, SGD lr 3.5e-4 wd 5e-4, StepLR(20, 0.1), 50 epochs).
  2. start   USL: the pre-trained backbone ``model.weights`` (e.g. DINO). UDA: the supervised source
             model ``source.model``; its backbone is kept, the BNNeck re-initialised. (Training that
             source model first from ``source.config`` is a workflow: ``reidkit.workflows.uda``.)
  3. epoch   ``pseudo_labels_epoch``: extract L2-normalised features of the unlabelled target train
             set (test transform) -> sparse k-reciprocal Jaccard -> DBSCAN (outliers dropped; optional
             Dash filter) -> memory = normalised cluster means; ``train_one_epoch``: ``iters`` steps with
             the camera-aware P x K sampler over pseudo-labels, loss = ClusterMemory(BN feature).
  4. log     clusters, outliers, memory size, (pseudo-label quality when train labels exist),
             loss, lr, speed, target mAP every ``eval.every`` epochs; atomic ``last.pt`` each epoch.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from reidkit.data.device_augment import collate, worker_transform
from reidkit.data.pseudo_sampler import CameraAwarePKSampler
from reidkit.data.train_loader import CachedImages, SeededSamples, cache_bytes, decode_device, default_num_workers
from reidkit.data.transforms import build_usl_test_transform, build_usl_train_transform, split_resize
from reidkit.engine.evaluate import evaluate_query_gallery
from reidkit.engine.precision import autocast, maybe_compile, to_device
from reidkit.engine.run import Run, say, start
from reidkit.losses.cluster_memory import ClusterMemory, cluster_centroids
from reidkit.methods.pseudo_labels import (DashThreshold, PseudoLabeler, cluster_size_histogram, label_quality,
                                          memory_losses)
from reidkit.recipes.adapt import (AdaptConfig, AdaptDataConfig, AdaptError, AdaptEvalConfig, AdaptModelConfig,
                                   AdaptSolverConfig, MemoryConfig, SourceConfig)
from reidkit.utils.checkpoint import rng_state, set_rng_state
from reidkit.utils.io import save_json


# ---------------------------------------------------------------------------------------------
# 1. the recipe: ``AdaptConfig`` in reidkit.recipes.adapt (torch-free, so that ``reidkit adapt`` checks it
#    before torch is imported), re-exported here.


# ---------------------------------------------------------------------------------------------
# 2. the starting model


def source_model_file(source: str | Path) -> Path:
    """UDA: the source model file (``source.model``: a model file, or a run folder's best/last model)."""
    p = Path(source)
    if p.is_dir():
        for name in ("best.safetensors", "last.safetensors"):
            if (p / name).is_file():
                return p / name
        raise AdaptError(f"{p}: no best.safetensors or last.safetensors in this run folder")
    if not p.is_file():
        raise AdaptError(f"source.model={p}: no such file")
    return p


def build_start_model(cfg: AdaptConfig, source_file: Path | None) -> nn.Module:
    """The model to adapt (``model.neck_feat='after'`` by default: the BN feature is clustered, trained
    and tested), starting from the source model's backbone (UDA) or ``model.weights`` (USL)."""
    from reidkit.models import build_model, load_model

    model = build_model(cfg.model.preset, num_classes=0, **{"img_size": tuple(cfg.data.size), **cfg.model.knobs()})
    if source_file is not None:
        src = load_model(source_file)
        try:  # backbone only: the classifier and the BNNeck are re-initialised (cluster-contrast load_param)
            model.backbone.load_state_dict(src.backbone.state_dict())
        except RuntimeError as e:
            raise AdaptError(f"{source_file}: its backbone does not fit model.preset={cfg.model.preset} "
                             f"{cfg.model.knobs()}: {str(e).splitlines()[0]}") from None
    elif cfg.model.weights:
        from reidkit.models.checkpoints import load_weights
        load_weights(model, cfg.model.weights)
    return model


# ---------------------------------------------------------------------------------------------
# 3. features (the test transform; L2-normalised)


@torch.no_grad()
def _extract_cached(model: nn.Module, images: np.ndarray, batch: int, device, amp) -> np.ndarray:
    """Features of the cached (N, H, W, 3) uint8 images: the test transform is resize (already done,
    bicubic) -> ToTensor -> Normalize(0.5, 0.5), so only the last two steps run here."""
    model.eval()
    out = []
    for s in range(0, len(images), batch):
        x = torch.from_numpy(images[s:s + batch]).to(device).permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - 0.5) / 0.5
        with autocast(device, amp):
            f = model(x)
        out.append(F.normalize(f.float(), dim=1).cpu().numpy())
    return np.concatenate(out)


def _extract(model, train_set, records, cfg: AdaptConfig, device, amp) -> np.ndarray:
    """(N, D) L2-normalised features of the train records, in record order."""
    if isinstance(train_set, CachedImages):
        return _extract_cached(model, train_set.images, cfg.data.extract_batch_size, device, amp)
    from reidkit.evaluation.extract import extract_features

    fs = extract_features(model, records, transform=build_usl_test_transform(cfg.data.size),
                          batch_size=cfg.data.extract_batch_size, device=device, amp_dtype=amp,
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
# 4. one epoch: pseudo-labels, then training on them


def pseudo_labels_epoch(run: Run, model, memory: ClusterMemory, train_set, records, camids, true_pids,
                        dash: DashThreshold | None, labeler: PseudoLabeler,
                        epoch: int) -> tuple[np.ndarray, dict[str, float]]:
    """Features -> Jaccard -> DBSCAN -> memory of normalised cluster means; returns the training labels
    (-1 = not trained on this epoch) and the epoch's clustering log."""
    cfg, device = run.cfg, run.device
    t0 = time.perf_counter()
    feats = _extract(model, train_set, records, cfg, device, run.amp)
    t_extract = time.perf_counter() - t0
    labels = labeler(feats, camids)  # the graph on the run's device, DBSCAN on the CPU; eps fixed at epoch 1
    skipped = getattr(train_set, "skipped_paths", None)
    if skipped:
        bad = set(skipped)
        labels[[i for i, r in enumerate(records) if r.path in bad]] = -1
    t_cluster = time.perf_counter() - t0 - t_extract
    n_clusters = int(labels.max()) + 1
    if n_clusters < 1:
        raise AdaptError(f"epoch {epoch + 1}: DBSCAN found no cluster (all {len(labels)} samples are "
                         f"outliers); raise cluster.eps (now {labeler.eps:.3f}) or lower min_samples")
    if n_clusters == 1:
        say(f"[yellow]warning:[/] epoch {epoch + 1}: DBSCAN put every clustered sample in ONE cluster, "
            f"so the contrastive loss is 0 this epoch; lower cluster.eps (now {labeler.eps:.3f}) or k1")
    say(f"epoch {epoch + 1}: eps {labeler.eps:.3f}{' (auto)' if cfg.cluster.eps == 'auto' else ''}; "
        f"{cluster_size_histogram(labels)}")
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
    if true_pids is not None:
        row.update({f"pl_{k}": v for k, v in label_quality(labels, true_pids).items() if k not in ("outliers",)})
    row.update(extract_s=t_extract, cluster_s=t_cluster)
    return train_labels, row


def train_one_epoch(run: Run, forward, model, memory: ClusterMemory, optimizer, loader, train_labels: np.ndarray,
                    epoch: int, bar, task, augment: nn.Module | None = None) -> dict[str, float]:
    """``solver.iters`` steps on the pseudo-labelled P x K batches; returns loss, lr and speed.
    ``augment``: ``data.device_augment``'s device half (the loader then delivers uint8 + draws)."""
    cfg, s, device = run.cfg, run.cfg.solver, run.device
    use_cams = getattr(model.spec, "sie_cameras", 0) > 0
    params = [p for p in model.parameters() if p.requires_grad]
    lr = s.lr * s.gamma ** (epoch // s.step_size)
    for g in optimizer.param_groups:
        g["lr"] = lr
    model.train()
    labels_dev = torch.from_numpy(train_labels).to(device)
    loss_sum, n_batches, n_images, t1 = 0.0, 0, 0, time.perf_counter()
    for it, (imgs, _, cams, idx) in enumerate(loader):
        imgs, cams, idx = to_device((imgs, cams, idx), device)
        if augment is not None:
            imgs = augment(imgs)
        targets = labels_dev[idx]
        with autocast(device, run.amp):
            feat = forward(imgs, cams if use_cams else None)
            bn, _ = model.head(feat)
        loss = memory(bn.float(), targets)
        run.guard(loss, f"epoch {epoch + 1}, iteration {it + 1}", "Lower solver.lr or set solver.grad_clip.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
        optimizer.step()
        loss_sum += float(loss.detach())
        n_batches += 1
        n_images += imgs.shape[0]
        bar.advance(task)
        if it % cfg.log_every == 0 or it == s.iters - 1:
            bar.update(task, description=f"epoch {epoch + 1}/{s.epochs} loss {loss_sum / n_batches:.3f}")
    t_train = time.perf_counter() - t1
    return {"loss": loss_sum / max(n_batches, 1), "lr": lr, "images_per_s": n_images / max(t_train, 1e-9),
            "train_s": t_train}


# ---------------------------------------------------------------------------------------------
# 5. the loop


def adapt(cfg: AdaptConfig, resume: bool = False, force: bool = False) -> Path:
    """Run USL / UDA by clustering and return the run folder (config.yaml, log.csv, last.pt,
    last/best.safetensors, summary.json). UDA starts from ``source.model``; to train it first from
    ``source.config`` use ``reidkit.workflows.uda.adapt_with_source``. ``resume=True`` continues from
    ``last.pt`` (the epoch in progress restarts, with the same result as an uninterrupted run). Raises
    ``NonFiniteLossError`` on a NaN/inf loss (the last good state stays)."""
    from reidkit.data.datasets import load_dataset
    from reidkit.data.image_dataset import ImageDataset
    if cfg.mode == "uda" and not cfg.source.model:
        raise AdaptError("mode=uda with source.config: the source model is trained by the UDA workflow "
                         "(`reidkit adapt`, or reidkit.workflows.uda.adapt_with_source); adapt() needs source.model")
    source_file = source_model_file(cfg.source.model) if cfg.mode == "uda" else None
    run = start(cfg, resume, force, AdaptError, distributed=False)
    device, out, s = run.device, run.out, cfg.solver

    dataset = load_dataset(cfg.data.format, cfg.data.root, **cfg.data.options)
    records = list(dataset.train)
    if len(records) < cfg.cluster.min_samples:
        raise AdaptError(f"{cfg.data.root}: {len(records)} training images, too few to cluster")
    camids = np.array([r.camid for r in records], dtype=np.int64)
    true_pids = np.array([r.pid for r in records], dtype=np.int64)
    true_pids = true_pids if cfg.data.quality and bool((true_pids >= 0).all()) else None

    # data: the train images (cached decoded when they fit) and the camera-aware sampler
    size = tuple(cfg.data.size)
    train_tf, on_device = build_usl_train_transform(size), None
    if cfg.data.device_augment:  # workers: resize + the sample's draws; the device: flip/pad/crop/erasing
        train_tf, on_device = worker_transform(train_tf)
        on_device = on_device.to(device)
    workers = default_num_workers() if cfg.data.num_workers < 0 else cfg.data.num_workers
    fits = cache_bytes(len(records), size) <= cfg.data.cache_max_gb * 2**30
    if cfg.data.cache == "memory" or (cfg.data.cache == "auto" and fits):
        resize, augment = split_resize(train_tf)
        train_set = CachedImages(records, resize, augment, workers, cfg.data.on_error,
                                 decode_device=decode_device(cfg.data.decode, device))
    else:
        train_set = ImageDataset(records, train_tf, on_error=cfg.data.on_error)
    sampler = CameraAwarePKSampler(np.zeros(len(records), dtype=np.int64), camids, cfg.data.batch_size,
                                   cfg.data.num_instances, s.iters, seed=cfg.seed, with_seeds=True)
    loader = DataLoader(SeededSamples(train_set), batch_sampler=sampler, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                        prefetch_factor=4 if workers > 0 else None,
                        collate_fn=collate if on_device is not None else None,
                        generator=torch.Generator().manual_seed(cfg.seed))

    # model, memory, optimiser
    model = build_start_model(cfg, source_file).to(device)
    forward = maybe_compile(model.global_feature, cfg.compile)  # (images, camids) -> pre-BN feature
    memory = ClusterMemory(model.feat_dim, 0, cfg.memory.temperature, cfg.memory.momentum,
                           cfg.memory.update).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    dash = DashThreshold(cfg.cluster.dash_c, cfg.cluster.dash_gamma, cfg.cluster.dash_rho_min) \
        if cfg.cluster.filter == "dash" else None
    labeler = PseudoLabeler(cfg.cluster, device=str(device))

    start_epoch, state = 0, run.restore()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, run.best = int(state["epoch"]), dict(state["best"])
        if dash is not None and state.get("dash"):
            dash.load_state_dict(state["dash"])
        labeler.load_state_dict(state.get("pseudo_labeler") or {})
        set_rng_state(state["rng"])
        run.say(f"resumed {out} after epoch {start_epoch}")
    run.resume_log(start_epoch, state)

    summary: dict[str, Any] = {"mode": cfg.mode, "num_train_images": len(records), "device": str(device),
                               "source_model": str(source_file) if source_file else None}
    last_metrics: dict[str, float] = {}
    evaluates = cfg.eval.enabled and dataset.query and dataset.gallery
    if start_epoch == 0 and evaluates:
        summary["initial"] = evaluate_target(model, dataset, cfg, device, run.amp)
        run.say(f"before adaptation: mAP {summary['initial']['mAP']:.1f} R1 {summary['initial']['R1']:.1f}")

    with run.progress() as bar:
        task = bar.add_task("adapt", total=(s.epochs - start_epoch) * s.iters)
        for epoch in range(start_epoch, s.epochs):
            train_labels, row = pseudo_labels_epoch(run, model, memory, train_set, records, camids, true_pids,
                                                    dash, labeler, epoch)
            sampler.set_labels(train_labels, camids)
            sampler.set_epoch(epoch)
            row.update(train_one_epoch(run, forward, model, memory, optimizer, loader, train_labels, epoch, bar, task,
                                       on_device))
            if evaluates and run.eval_due(epoch + 1, s.epochs, cfg.eval.every):
                last_metrics = evaluate_target(model, dataset, cfg, device, run.amp)
                row.update(last_metrics)
                run.keep_best(model, last_metrics, epoch + 1)
            run.publish(model, "last.safetensors")
            run.save({"epoch": epoch + 1, "best": run.best, "rng": rng_state(), "log_row": row,
                      "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "dash": dash.state_dict() if dash else None, "pseudo_labeler": labeler.state_dict()})
            run.log_row(epoch + 1, **row)
            bar.console.print(_epoch_line(epoch + 1, s.epochs, row), highlight=False)

    summary.update(best_mAP=run.best["mAP"], best_epoch=run.best["epoch"], final=last_metrics)
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
           "AdaptSolverConfig", "AdaptEvalConfig", "AdaptError", "adapt", "build_start_model", "evaluate_target",
           "pseudo_labels_epoch", "train_one_epoch", "source_model_file"]
