"""Image-to-video distillation by mutual learning with the triplet contrast loss (TCL, arXiv 2201.08887).

    from reidkit.config import load_config
    from reidkit.methods.distill_tcl import DistillConfig, distill
    cfg = load_config(DistillConfig, "configs/video/mars_tcl_vit_small_ics.yaml", ["data.root=data/mars"])
    run_dir = distill(cfg)          # distill(cfg, resume=True) continues a killed run

The story, top to bottom:
  1. recipe  ``DistillConfig`` (``reidkit.recipes.distill``, a ``RunRecipe``: output, seed, device,
             precision, log_every at the top level as in every recipe): data (tracklets, clip length),
             teacher (a ``VideoReIDModel``: frame backbone + temporal pooling), student (an image
             ``ReIDModel``), distill (method and weights), loss, solver, eval.
  2. loss    ``MutualDistillLoss``. Every batch holds P identities x K tracklets; the teacher sees
             each tracklet as a clip of ``seq_len`` frames, the student sees one frame of that clip.
             Each network keeps its own ID cross-entropy + batch-hard triplet loss, and
             ``distill.method`` adds (formulas and our choices: ``reidkit.losses.tcl``):
               * ``none``: nothing (the student alone; the teacher is not even built);
               * ``video``: the video model alone (no student): a plain video re-ID recipe;
               * ``kd``:   logits KD, L_S += beta KD(T->S) and, mutual, L_T += beta KD(S->T);
               * ``tcl``:  the paper's method: L_S += alpha TCL(T->S) + beta KD(T->S) and, mutual,
                           L_T += alpha TCL(S->T) + beta KD(S->T).
             Mutual learning = both networks train at once, each distilling from the other's detached
             outputs (``distill.mutual=false``: the teacher learns from the labels only).
  3. loop    ``distill`` on the training engine (``reidkit.engine.run``: run folder, resume with the
             recipe diff, NaN guard, checksummed ``last.pt``, log.csv): clips -> one frame per clip ->
             both forwards -> loss -> NaN stop -> step; per epoch: log, ``last.pt``; at the end (and every ``eval.every`` epochs) the image-to-
             video evaluation: query *frames* embedded by the student against gallery *tracklets*
             embedded by the student (its frame features averaged, as VKD evaluates its student), and
             the teacher's video-to-video figures for reference.

Choices the paper leaves open (beyond those of the loss): the student's frame is drawn uniformly
from the teacher's clip, seeded by (seed, step) so a resumed run draws the same; one AdamW
optimiser over both networks (their losses do not share parameters, so this is two updates at the
same learning rate); student and teacher start from the same backbone weights when given.
Single-process (no DDP): the teacher forward costs ``seq_len`` x the student's.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from reidkit.losses.softmax import cross_entropy
from reidkit.losses.tcl import TripletContrastLoss, logits_kd
from reidkit.losses.triplet import TripletLoss
from reidkit.recipes.distill import (DistillConfig, DistillError, DistillLossConfig, LossConfig,  # noqa: F401
                                     NetConfig, SolverConfig, VideoDataConfig, VideoEvalConfig)  # (re-exported)


# ---------------------------------------------------------------------------------------------
# 1. the recipe: ``DistillConfig`` in reidkit.recipes.distill (torch-free, so that ``reidkit distill`` checks it
#    before torch is imported), re-exported here.


# ---------------------------------------------------------------------------------------------
# 2. the loss


class MutualDistillLoss(nn.Module):
    """``forward(student (logits, feat), teacher (logits, feat) or None, pids) -> (loss, stats)``."""

    def __init__(self, loss: LossConfig, distill: DistillLossConfig):
        super().__init__()
        self.cfg, self.d = loss, distill
        self.triplet = TripletLoss(loss.triplet_margin)
        self.tcl = TripletContrastLoss(distill.tcl_tau)

    def _own(self, logits, feat, pids) -> torch.Tensor:
        return (self.cfg.id_weight * cross_entropy(logits, pids, self.cfg.label_smoothing)
                + self.cfg.triplet_weight * self.triplet(feat, pids))

    def _from(self, logits, feat, src_logits, src_feat, pids, stats: dict, tag: str) -> torch.Tensor:
        """What a network learns from the other one (its outputs detached inside the losses)."""
        out = feat.sum() * 0.0
        if self.d.kd_weight > 0:
            kd = logits_kd(logits, src_logits, self.d.kd_temperature)
            stats[f"kd_{tag}"] = float(kd.detach())
            out = out + self.d.kd_weight * kd
        if self.d.method == "tcl" and self.d.tcl_weight > 0:
            tcl = self.tcl(feat, src_feat, pids)
            stats[f"tcl_{tag}"] = float(tcl.detach())
            out = out + self.d.tcl_weight * tcl
        return out

    def forward(self, student, teacher, pids) -> tuple[torch.Tensor, dict[str, float]]:
        stats: dict[str, float] = {}
        if student is None:  # method 'video': the video model alone
            loss_t = self._own(teacher[0], teacher[1].float(), pids)
            stats["teacher"] = float(loss_t.detach())
            stats["acc_t"] = float((teacher[0].detach().argmax(1) == pids).float().mean())
            return loss_t, stats
        zs, fs = student[0], student[1].float()
        loss_s = self._own(zs, fs, pids)
        stats["student"] = float(loss_s.detach())
        stats["acc_s"] = float((zs.detach().argmax(1) == pids).float().mean())
        if teacher is None:
            return loss_s, stats
        zt, ft = teacher[0], teacher[1].float()
        loss_t = self._own(zt, ft, pids)
        stats["teacher"] = float(loss_t.detach())
        stats["acc_t"] = float((zt.detach().argmax(1) == pids).float().mean())
        if self.d.method in ("kd", "tcl"):
            loss_s = loss_s + self._from(zs, fs, zt, ft, pids, stats, "s")
            if self.d.mutual:
                loss_t = loss_t + self._from(zt, ft, zs, fs, pids, stats, "t")
        return loss_s + loss_t, stats


# ---------------------------------------------------------------------------------------------
# setup


def load_video_data(cfg: VideoDataConfig):
    """The ``VideoDataset`` of ``cfg`` (reader by format), training pids relabelled to 0..N-1."""
    from reidkit.data.datasets import load_dataset
    from reidkit.data.records import VideoDataset

    if not cfg.root:
        raise DistillError("data.root is not set: give the dataset folder, e.g. `data.root=data/mars`")
    ds = load_dataset(cfg.format, cfg.root, **cfg.options)
    if not isinstance(ds, VideoDataset):
        raise DistillError(f"{cfg.root}: format {cfg.format!r} gives {type(ds).__name__}, not tracklets; "
                           "use a video format (mars, duke_video, ...)")
    return ds


def _prepare(dataset):
    from reidkit.data.records import relabel_tracklets

    if not dataset.train:
        raise DistillError(f"{dataset.name}: the training split is empty")
    pids = sorted({t.pid for t in dataset.train})
    if pids != list(range(len(pids))):
        dataset.train = relabel_tracklets(dataset.train)
    return dataset


def _build(net: NetConfig, num_classes: int, size, video: bool):
    from reidkit.models import build_model
    from reidkit.models.temporal import VideoReIDModel

    model = build_model(net.preset, num_classes=num_classes, img_size=tuple(size),
                        drop_path_rate=net.drop_path_rate, **net.overrides)
    if net.weights:
        from reidkit.models.checkpoints import load_weights
        load_weights(model, net.weights, head=False)
    return VideoReIDModel(model, net.pool) if video else model


def _frame_choice(seed: int, step: int, b: int, t: int) -> torch.Tensor:
    """(B,) frame index per clip for the student, a pure function of (seed, step)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))
    return torch.randint(0, t, (b,), generator=g)


# ---------------------------------------------------------------------------------------------
# evaluation


def evaluate_distill(student: nn.Module | None, teacher: nn.Module | None, dataset, cfg: DistillConfig,
                     device: torch.device, progress: bool = False) -> dict[str, float]:
    """Percent figures of the student: image-to-video (``i2v_*``), image-to-image (``i2i_*``) and
    video-to-video with its frame features averaged (``v2v_*``); with a teacher, the teacher's
    video-to-video (``teacher_v2v_*``). Without a student (method 'video') the teacher's frame
    model (a clip of one frame) plays the student's part in the first three."""
    from reidkit.data.transforms import build_test_transform
    from reidkit.evaluation.video import image_to_image, image_to_video, video_to_video
    from reidkit.evaluation.video_extract import extract_tracklet_features

    e = cfg.eval
    kw = dict(transform=build_test_transform(tuple(cfg.data.size)), sampler=e.sampler, seq_len=e.seq_len,
              batch_size=e.batch_size, device=device, progress=progress)
    if student is None:
        student = teacher.frame_model
    sq = extract_tracklet_features(student, dataset.query, keep_frames=True, **kw)
    sg = extract_tracklet_features(student, dataset.gallery, keep_frames=True, **kw)
    out: dict[str, float] = {}
    for name, m in (("i2v", image_to_video(sq.frames, sg.tracklets, e.query_frame, metric=e.metric)),
                    ("i2i", image_to_image(sq.frames, sg.frames, e.query_frame, metric=e.metric)),
                    ("v2v", video_to_video(sq.tracklets, sg.tracklets, metric=e.metric))):
        out.update(_percent(name, m))
    if teacher is not None:
        tq = extract_tracklet_features(teacher, dataset.query, **kw)
        tg = extract_tracklet_features(teacher, dataset.gallery, **kw)
        out.update(_percent("teacher_v2v", video_to_video(tq.tracklets, tg.tracklets, metric=e.metric)))
    return out


def _percent(name: str, m: dict) -> dict[str, float]:
    cmc = m["cmc"]
    return {f"{name}_mAP": 100 * float(m["mAP"]), f"{name}_R1": 100 * float(cmc[0]),
            f"{name}_R5": 100 * float(cmc[min(4, len(cmc) - 1)])}


# ---------------------------------------------------------------------------------------------
# 3. the loop


def distill(cfg: DistillConfig, resume: bool = False, force: bool = False, dataset=None,
            progress: bool = True) -> Path:
    """Train student (and teacher) and return the run folder (config.yaml, log.csv, last.pt,
    student.safetensors, teacher.safetensors, summary.json). ``dataset``: a ``VideoDataset`` to use
    instead of reading ``cfg.data`` (tests, notebooks). ``force`` with ``resume`` accepts a changed
    recipe (the engine prints the differences)."""
    from reidkit.data.transforms import build_train_transform
    from reidkit.data.video_loader import build_video_train_loader
    from reidkit.engine.precision import autocast, grad_scaler
    from reidkit.engine.run import start
    from reidkit.methods.optim import build_optimizer, cosine_iter_schedule
    from reidkit.models.temporal import save_video_model
    from reidkit.utils.checkpoint import rng_state, set_rng_state
    from reidkit.utils.io import save_json
    from reidkit.utils.seed import seed_everything

    if dataset is None and not cfg.data.root:
        raise DistillError("data.root is not set: give the dataset folder, e.g. `data.root=data/mars`")
    run = start(cfg, resume, force, error=DistillError, distributed=False)
    out, device, amp = run.out, run.device, run.amp
    dataset = _prepare(dataset if dataset is not None else load_video_data(cfg.data))
    num_classes = len({t.pid for t in dataset.train})
    d = cfg.data
    tf = build_train_transform(tuple(d.size), hflip=d.hflip, pad=d.pad, erasing=d.erasing)
    loader, sampler, clips = build_video_train_loader(
        dataset.train, tf, batch_size=d.batch_size, num_instances=d.num_instances, seed=cfg.seed,
        seq_len=d.seq_len, method=d.sampler, num_workers=d.num_workers, pin_memory=device.type == "cuda",
        on_error=d.on_error)

    seed_everything(cfg.seed, cfg.deterministic)  # the models' init does not depend on the data set-up
    method = cfg.distill.method
    student = None if method == "video" else _build(cfg.student, num_classes, d.size, video=False).to(device)
    teacher = None if method == "none" else _build(cfg.teacher, num_classes, d.size, video=True).to(device)
    nets = nn.ModuleDict({k: v for k, v in (("student", student), ("teacher", teacher)) if v is not None})
    criterion = MutualDistillLoss(cfg.loss, cfg.distill)
    s = cfg.solver
    optimizer = build_optimizer(nets, "adamw", s.lr, s.weight_decay)
    scaler = grad_scaler(amp)
    start_epoch, step = 0, 0
    state = run.restore()
    if state is not None:
        nets.load_state_dict(state["nets"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        set_rng_state(state["rng"])
        run.say(f"resumed {out} after epoch {start_epoch}")
    run.resume_log(start_epoch, state)

    iters = len(sampler)
    if iters == 0:
        raise DistillError(f"no complete P x K batch: {len({t.pid for t in dataset.train})} identities for "
                           f"batch {d.batch_size} / K {d.num_instances}; lower data.batch_size")
    sched = cosine_iter_schedule(1.0, s.min_lr_factor, s.epochs, iters, s.warmup_epochs, s.warmup_factor)
    params = [p for p in nets.parameters() if p.requires_grad]
    metrics: dict[str, float] = {}
    for epoch in range(start_epoch, s.epochs):
        sampler.set_epoch(epoch)
        nets.train()
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        for it, (clip, pids, camids, _) in enumerate(loader):
            for g in optimizer.param_groups:
                g["lr"] = g["peak_lr"] * float(sched[min(step, len(sched) - 1)])
            clip, pids = clip.to(device, non_blocking=True), pids.to(device, non_blocking=True)
            pick = _frame_choice(cfg.seed, step, clip.shape[0], clip.shape[1]).to(device)
            frames = clip[torch.arange(clip.shape[0], device=device), pick]
            with autocast(device, amp):
                s_out = student(frames) if student is not None else None
                t_out = teacher(clip) if teacher is not None else None
            loss, stats = criterion(s_out, t_out, pids)
            run.guard(loss.detach(), f"epoch {epoch + 1}, iteration {it + 1}",
                      "Lower solver.lr, set solver.grad_clip, or use precision=bf16 instead of fp16.")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if s.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v
        row = {k: v / iters for k, v in sums.items()}
        row.update(lr=optimizer.param_groups[0]["lr"], epoch_s=time.perf_counter() - t0)
        due = run.eval_due(epoch + 1, s.epochs, cfg.eval.every)
        if cfg.eval.enabled and dataset.query and dataset.gallery and due:
            metrics = evaluate_distill(student, teacher, dataset, cfg, device)
            row.update(metrics)
        if student is not None:
            run.publish(student, "student.safetensors")
        if teacher is not None:
            save_video_model(teacher, out / "teacher.safetensors")
        run.save({"epoch": epoch + 1, "step": step, "rng": rng_state(), "nets": nets.state_dict(),
                  "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "log_row": row})
        run.log_row(epoch + 1, **row)
        if progress:
            run.say(f"epoch {epoch + 1}/{s.epochs}  " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    save_json(out / "summary.json", {"method": cfg.distill.method, "num_classes": num_classes,
                                     "num_train_tracklets": len(dataset.train), "final": metrics,
                                     "bad_frames": clips.num_bad_frames, "device": str(device)})
    return out


__all__ = ["DistillConfig", "VideoDataConfig", "NetConfig", "DistillLossConfig", "LossConfig", "SolverConfig",
           "VideoEvalConfig", "DistillError", "MutualDistillLoss", "distill", "evaluate_distill",
           "load_video_data"]
