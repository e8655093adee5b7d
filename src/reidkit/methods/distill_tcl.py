"""Image-to-video distillation by mutual learning with the triplet contrast loss (TCL, arXiv 2201.08887).

    from reidkit.config import load_config
    from reidkit.methods.distill_tcl import DistillConfig, distill
    cfg = load_config(DistillConfig, "configs/video/mars_tcl_vit_small_ics.yaml", ["data.root=data/mars"])
    run_dir = distill(cfg)          # distill(cfg, resume=True) continues a killed run

The story, top to bottom:
  1. recipe  ``DistillConfig``: data (tracklets, clip length), teacher (a ``VideoReIDModel``: frame
             backbone + temporal pooling), student (an image ``ReIDModel``), distill (method and
             weights), loss, solver, train, eval, output.
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
  3. loop    ``distill``: clips -> one frame per clip -> both forwards -> loss -> NaN stop -> step;
             per epoch: log, ``last.pt``; at the end (and every ``eval.every`` epochs) the image-to-
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from reidkit.losses.softmax import cross_entropy
from reidkit.losses.tcl import TripletContrastLoss, logits_kd
from reidkit.losses.triplet import TripletLoss


class DistillError(ValueError):
    """A distillation setup that cannot run (bad option combination, existing run folder, data)."""


# ---------------------------------------------------------------------------------------------
# 1. the recipe


@dataclass
class VideoDataConfig:
    format: str = "mars"                          # a video reader of reidkit.data.datasets
    root: str = ""
    options: dict = field(default_factory=dict)
    size: tuple[int, int] = (256, 128)            # (height, width) of every frame
    seq_len: int = 8                              # frames per training clip (teacher input)
    sampler: Literal["random", "evenly"] = "random"
    hflip: float = 0.5
    pad: int = 10
    erasing: float = 0.5
    batch_size: int = 32                          # P x K tracklets
    num_instances: int = 4
    num_workers: int = 0
    on_error: Literal["skip", "raise"] = "skip"


@dataclass
class NetConfig:
    preset: str = "vit_small_ics"
    weights: str | None = None                    # pre-trained backbone (DINO / official / timm / ours)
    pool: Literal["avg", "max", "attention"] = "avg"   # temporal pooling (teacher only)
    drop_path_rate: float = 0.1
    overrides: dict = field(default_factory=dict)


@dataclass
class DistillLossConfig:
    method: Literal["none", "kd", "tcl", "video"] = "tcl"
    mutual: bool = True
    tcl_weight: float = 1.0                       # alpha
    tcl_tau: float = 0.1
    kd_weight: float = 1.0                        # beta
    kd_temperature: float = 4.0


@dataclass
class LossConfig:
    id_weight: float = 1.0
    label_smoothing: float = 0.1
    triplet_weight: float = 1.0
    triplet_margin: float | None = None           # None: soft margin


@dataclass
class SolverConfig:
    lr: float = 3.5e-4
    weight_decay: float = 0.05
    epochs: int = 60
    warmup_epochs: float = 5
    warmup_factor: float = 0.01
    min_lr_factor: float = 0.01
    grad_clip: float = 0.0
    amp: Literal["none", "bf16", "fp16"] = "none"


@dataclass
class RunConfig:
    seed: int = 0
    device: str = "auto"
    log_every: int = 20


@dataclass
class VideoEvalConfig:
    enabled: bool = True
    every: int = 0                                # also every N epochs; 0 = at the end only
    batch_size: int = 128
    sampler: Literal["all", "evenly"] = "all"     # gallery / query tracklet frames
    seq_len: int = 15
    query_frame: Literal["first", "middle", "all"] = "first"
    metric: Literal["cosine", "euclidean"] = "cosine"


@dataclass
class DistillConfig:
    data: VideoDataConfig = field(default_factory=VideoDataConfig)
    teacher: NetConfig = field(default_factory=NetConfig)
    student: NetConfig = field(default_factory=NetConfig)
    distill: DistillLossConfig = field(default_factory=DistillLossConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    train: RunConfig = field(default_factory=RunConfig)
    eval: VideoEvalConfig = field(default_factory=VideoEvalConfig)
    output: str = "runs/distill_tcl"


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


def _device(pref: str) -> torch.device:
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(pref)


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


def _check(cfg: DistillConfig) -> None:
    d = cfg.data
    if d.batch_size % d.num_instances:
        raise DistillError(f"data.batch_size={d.batch_size} is not a multiple of num_instances={d.num_instances}")
    if d.seq_len < 1 or cfg.solver.epochs < 1:
        raise DistillError(f"data.seq_len and solver.epochs must be >= 1 (got {d.seq_len}, {cfg.solver.epochs})")
    if cfg.distill.method == "tcl" and cfg.distill.tcl_weight <= 0 and cfg.distill.kd_weight <= 0:
        raise DistillError("distill.method=tcl with tcl_weight and kd_weight both 0 distils nothing")


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


def distill(cfg: DistillConfig, resume: bool = False, dataset=None, progress: bool = True) -> Path:
    """Train student (and teacher) and return the run folder (config.yaml, log.csv, last.pt,
    student.safetensors, teacher.safetensors, summary.json). ``dataset``: a ``VideoDataset`` to use
    instead of reading ``cfg.data`` (tests, notebooks)."""
    from reidkit.config import to_dict
    from reidkit.data.transforms import build_train_transform
    from reidkit.data.video_loader import build_video_train_loader
    from reidkit.methods.optim import build_optimizer, cosine_iter_schedule
    from reidkit.methods.training_run import autocast_dtype, eval_due, open_run_folder, say
    from reidkit.models import save_model
    from reidkit.models.temporal import save_video_model
    from reidkit.utils.checkpoint import check_finite, load_state, rng_state, save_state, set_rng_state
    from reidkit.utils.io import save_json
    from reidkit.utils.metric_log import MetricLog
    from reidkit.utils.seed import seed_everything

    _check(cfg)
    out = Path(cfg.output)
    state_path = open_run_folder(out, cfg, resume, DistillError)
    device = _device(cfg.train.device)
    seed_everything(cfg.train.seed)
    dataset = _prepare(dataset if dataset is not None else load_video_data(cfg.data))
    num_classes = len({t.pid for t in dataset.train})
    d = cfg.data
    tf = build_train_transform(tuple(d.size), hflip=d.hflip, pad=d.pad, erasing=d.erasing)
    loader, sampler, clips = build_video_train_loader(
        dataset.train, tf, batch_size=d.batch_size, num_instances=d.num_instances, seed=cfg.train.seed,
        seq_len=d.seq_len, method=d.sampler, num_workers=d.num_workers, pin_memory=device.type == "cuda",
        on_error=d.on_error)

    seed_everything(cfg.train.seed)
    method = cfg.distill.method
    student = None if method == "video" else _build(cfg.student, num_classes, d.size, video=False).to(device)
    teacher = None if method == "none" else _build(cfg.teacher, num_classes, d.size, video=True).to(device)
    nets = nn.ModuleDict({k: v for k, v in (("student", student), ("teacher", teacher)) if v is not None})
    criterion = MutualDistillLoss(cfg.loss, cfg.distill)
    s = cfg.solver
    optimizer = build_optimizer(nets, "adamw", s.lr, s.weight_decay)
    amp = autocast_dtype(s.amp, device, DistillError)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    start_epoch, step = 0, 0
    log = MetricLog(out / "log.csv")
    if resume:
        state = load_state(state_path)
        nets.load_state_dict(state["nets"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, step = int(state["epoch"]), int(state["step"])
        set_rng_state(state["rng"])
        say(f"resumed {out} after epoch {start_epoch}")
    log.truncate_after(start_epoch)

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
            pick = _frame_choice(cfg.train.seed, step, clip.shape[0], clip.shape[1]).to(device)
            frames = clip[torch.arange(clip.shape[0], device=device), pick]
            with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                s_out = student(frames) if student is not None else None
                t_out = teacher(clip) if teacher is not None else None
            loss, stats = criterion(s_out, t_out, pids)
            check_finite(loss.detach(), f"epoch {epoch + 1}, iteration {it + 1} (last good: {state_path})")
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
        if cfg.eval.enabled and dataset.query and dataset.gallery and eval_due(epoch + 1, s.epochs, cfg.eval.every):
            metrics = evaluate_distill(student, teacher, dataset, cfg, device)
            row.update(metrics)
        if student is not None:
            save_model(student, out / "student.safetensors")
        if teacher is not None:
            save_video_model(teacher, out / "teacher.safetensors")
        save_state(state_path, {"epoch": epoch + 1, "step": step, "rng": rng_state(), "nets": nets.state_dict(),
                                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                                "config": to_dict(cfg)})
        log.log(epoch + 1, **row)
        if progress:
            say(f"epoch {epoch + 1}/{s.epochs}  " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    save_json(out / "summary.json", {"method": cfg.distill.method, "num_classes": num_classes,
                                     "num_train_tracklets": len(dataset.train), "final": metrics,
                                     "bad_frames": clips.num_bad_frames, "device": str(device)})
    return out


__all__ = ["DistillConfig", "VideoDataConfig", "NetConfig", "DistillLossConfig", "LossConfig", "SolverConfig",
           "RunConfig", "VideoEvalConfig", "DistillError", "MutualDistillLoss", "distill", "evaluate_distill",
           "load_video_data"]
