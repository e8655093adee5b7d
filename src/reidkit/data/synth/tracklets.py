"""Synthetic tracklets: short walking sequences per identity and camera, in the DukeMTMC-VideoReID layout.

Output layout (``OUT``), read by ``load_dataset("duke-video", OUT)``::

    train/0007/0001/0007_C2_F0001_X00412.jpg ...   <pid>/<tracklet>/<pid>_C<camera>_F<frame>_X<clock>.jpg
    query/<pid>/<tracklet>/...      one tracklet per test id
    gallery/<pid>/<tracklet>/...    the test ids' other tracklets (one at least in another camera)
                                    and distractor ids seen once, never queried
    synth_tracklets.json            resolved config and statistics, written last (marks completion)

What moves within a tracklet (everything else is fixed for it, as in a real track):
  * gait phase: legs and arm swing with a period of 8-14 frames;
  * scale and position drift: the person comes closer or walks away and the box lags behind;
  * viewpoint drift: now and then the person turns by 90 degrees part-way;
  * background: the scene slides behind the walker;
  * moving occluders: a pole, a low object or a passer-by crosses the box;
  * detector jitter: a few frames have a badly placed or badly sized box.
Identities, cameras and the per-frame optics come from the image benchmark (``identity.py``,
``styles.py``, ``render.py``). Each tracklet is rendered from its own seed, so the bytes of a file
depend only on the config, never on the number of workers.
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from reidkit.data.synth.config import image_checks, raise_first_failed
from reidkit.data.synth.generate import SynthError, run_chunks
from reidkit.data.synth.identity import Identity, sample_identity
from reidkit.data.synth.render import SUPERSAMPLE, apply_camera, draw_person, encode_jpeg, scene_texture
from reidkit.data.synth.styles import DOMAIN_STYLES, VIEWS, Camera, make_camera

SPLITS = ("train", "query", "gallery")
META_JSON = "synth_tracklets.json"
# A quarter turn from each view (the person turns left or right part-way through a tracklet).
TURNS = {"front": ("left", "right"), "back": ("left", "right"), "left": ("front", "back"),
         "right": ("front", "back")}


@dataclass
class TrackletSynthConfig:
    seed: int = 0
    domain: int = 0                  # which city style (0..3, see styles.DOMAIN_STYLES)
    train_ids: int = 100
    test_ids: int = 100
    distractors: int = 20            # gallery-only ids, one tracklet each, never queried
    cameras: int = 4                 # 2..9
    min_cameras_per_id: int = 2
    tracklets_per_camera: float = 1.3  # mean tracklets of an id in each camera that sees it
    min_frames: int = 8
    max_frames: int = 16
    turn_prob: float = 0.15          # a tracklet in which the person turns part-way
    jitter_prob: float = 0.08        # a frame whose detection box is badly placed or sized
    height: int = 128
    width: int = 64
    jpeg_quality: int = 90
    workers: int = 1                 # rendering processes; the files do not depend on it

    def validate(self) -> "TrackletSynthConfig":
        """Raise ``ConfigError`` naming the first field that cannot work."""
        checks = [
            ("domain", 0 <= self.domain < len(DOMAIN_STYLES), f"must be 0..{len(DOMAIN_STYLES) - 1}"),
            ("train_ids", self.train_ids >= 1, "must be >= 1"),
            ("test_ids", self.test_ids >= 1, "must be >= 1"),
            ("distractors", self.distractors >= 0, "must be >= 0"),
            ("distractors", self.train_ids + self.test_ids + self.distractors <= 9999,
             "train_ids + test_ids + distractors must be <= 9999 (4-digit pids)"),
            ("cameras", 2 <= self.cameras <= 9, "must be 2..9"),
            ("min_cameras_per_id", 2 <= self.min_cameras_per_id <= self.cameras, "must be 2..cameras"),
            ("tracklets_per_camera", self.tracklets_per_camera >= 1.0, "must be >= 1"),
            ("min_frames", self.min_frames >= 1, "must be >= 1"),
            ("max_frames", self.min_frames <= self.max_frames <= 9999, "must be min_frames..9999"),
            ("turn_prob", 0.0 <= self.turn_prob <= 1.0, "must be in [0, 1]"),
            ("jitter_prob", 0.0 <= self.jitter_prob <= 1.0, "must be in [0, 1]"),
        ]
        raise_first_failed(self, checks + image_checks(self))
        return self


@dataclass(frozen=True)
class TrackletJob:
    folder: str                      # relative to OUT: "<split>/<pid>/<tracklet>"
    pid: int
    camera: Camera
    ident: Identity
    other: Identity                  # a passer-by who may cross the box
    frames: int
    clock: int                       # the camera's frame counter at the first frame (the X in names)
    seed: int
    turn_prob: float
    jitter_prob: float


@dataclass
class TrackletSynthResult:
    root: Path
    stats: dict = field(default_factory=dict)
    num_frames: int = 0
    seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        return self.num_frames / max(self.seconds, 1e-9)


def plan(cfg: TrackletSynthConfig) -> list[TrackletJob]:
    """Every tracklet to render, in (split, pid, tracklet) order. Cheap and sequential."""
    style = DOMAIN_STYLES[cfg.domain]
    rng = np.random.default_rng([cfg.seed, 11])
    cameras = [make_camera(style, c, rng) for c in range(cfg.cameras)]
    pids = rng.permutation(np.arange(1, cfg.train_ids + cfg.test_ids + cfg.distractors + 1))
    train = sorted(int(p) for p in pids[:cfg.train_ids])
    test = sorted(int(p) for p in pids[cfg.train_ids:cfg.train_ids + cfg.test_ids])
    distractors = sorted(int(p) for p in pids[cfg.train_ids + cfg.test_ids:])
    jobs: list[TrackletJob] = []

    def add(split: str, pid: int, tid: int, cam: int, ident: Identity, r: np.random.Generator) -> None:
        n = int(r.integers(cfg.min_frames, cfg.max_frames + 1))
        seed = int(np.random.SeedSequence([cfg.seed, 12, pid, tid]).generate_state(1)[0])
        jobs.append(TrackletJob(f"{split}/{pid:04d}/{tid:04d}", pid, cameras[cam], ident,
                                sample_identity(style, r), n, int(r.integers(1, 90000)), seed,
                                cfg.turn_prob, cfg.jitter_prob))

    for pid in train + test:
        ident = sample_identity(style, np.random.default_rng([cfg.seed, 13, pid]))
        r = np.random.default_rng([cfg.seed, 14, pid])
        k = int(r.integers(cfg.min_cameras_per_id, cfg.cameras + 1))
        cams = sorted(int(c) for c in r.choice(cfg.cameras, k, replace=False))
        seen = [(c, j) for c in cams for j in range(1 + int(r.poisson(cfg.tracklets_per_camera - 1.0)))]
        query = int(r.integers(len(seen))) if pid in test else -1
        for tid, (cam, _) in enumerate(seen, 1):
            split = "train" if query < 0 else "query" if tid - 1 == query else "gallery"
            add(split, pid, tid, cam, ident, r)
    for pid in distractors:
        r = np.random.default_rng([cfg.seed, 15, pid])
        add("gallery", pid, 1, int(r.integers(cfg.cameras)), sample_identity(style, r), r)
    order = {s: i for i, s in enumerate(SPLITS)}
    jobs.sort(key=lambda j: (order[j.folder.split("/")[0]], j.folder))
    return jobs


def frame_name(pid: int, camera: Camera, frame: int, clock: int) -> str:
    """DukeMTMC-VideoReID file name: ``0001_C6_F0016_X30823.jpg`` (camera 1-based, frame 1-based)."""
    return f"{pid:04d}_C{camera.index + 1}_F{frame:04d}_X{clock:05d}.jpg"


def render_tracklet(job: TrackletJob, size: tuple[int, int]) -> list[Image.Image]:
    """The frames of one planned tracklet, (H, W) = ``size`` RGB images (pure function of the job)."""
    rng = np.random.default_rng(job.seed)
    H, W = size
    SH, SW = H * SUPERSAMPLE, W * SUPERSAMPLE
    cam, n = job.camera, job.frames
    view = VIEWS[int(rng.choice(4, p=np.asarray(cam.view_probs) / sum(cam.view_probs)))]
    turn_at = int(rng.integers(1, n)) if n > 1 and rng.random() < job.turn_prob else n
    turned = TURNS[view][int(rng.integers(2))]
    u0 = SH * float(rng.uniform(*cam.scale)) * job.ident.height
    scale_drift = float(rng.uniform(-0.12, 0.12))          # relative size change over the tracklet
    cx0 = SW * (0.5 + float(rng.normal(0, 0.04)))
    cx_drift = SW * float(rng.uniform(-0.06, 0.06))         # the box lags behind the walker
    foot0 = SH * float(rng.uniform(0.95, 1.01))
    period = float(rng.uniform(8.0, 14.0))
    phase0 = float(rng.uniform(0.0, 2 * math.pi))
    tex = scene_texture(cam, SH, SW)
    bg_x0 = float(rng.uniform(0, tex.shape[1] - SW))
    bg_y = int(rng.integers(0, tex.shape[0] - SH + 1))
    bg_speed = float(rng.choice([-1, 1])) * float(rng.uniform(0.5, 2.5)) * SUPERSAMPLE  # px per frame
    occluder = _plan_occluder(rng, SH, SW) if rng.random() < cam.occlusion else None
    frames = []
    for t in range(n):
        f = t / max(n - 1, 1)
        u = u0 * (1.0 + scale_drift * f)
        cx = cx0 + cx_drift * f
        foot = foot0 + SH * float(rng.normal(0, 0.004))
        if rng.random() < job.jitter_prob:             # a bad box for this frame only
            cx += SW * float(rng.normal(0, 0.12))
            u *= float(rng.uniform(0.85, 1.2))
            foot += SH * float(rng.normal(0, 0.06))
        x = int(np.clip(round(bg_x0 + bg_speed * t), 0, tex.shape[1] - SW))
        canvas = Image.fromarray(tex[bg_y:bg_y + SH, x:x + SW])
        gait = math.sin(phase0 + 2 * math.pi * t / period)
        draw_person(canvas, job.ident, view if t < turn_at else turned, cx, foot - u, u, rng, gait=gait)
        if occluder is not None:
            _draw_occluder(canvas, occluder, f, job.other, rng, gait)
        frames.append(apply_camera(canvas.reduce(SUPERSAMPLE), cam, rng))
    return frames


def _plan_occluder(rng: np.random.Generator, SH: int, SW: int) -> dict:
    """A moving occluder: its kind, colour and a horizontal path across the box over the tracklet."""
    kind = str(rng.choice(["pole", "low", "person"]))
    start = float(rng.uniform(-0.4, 0.5))
    end = start + float(rng.choice([-1, 1])) * float(rng.uniform(0.4, 1.2))
    return {"kind": kind, "x0": start * SW, "x1": end * SW, "width": float(rng.uniform(0.08, 0.18)) * SW,
            "top": float(rng.uniform(0.55, 0.8)) * SH, "length": float(rng.uniform(0.6, 1.2)) * SW,
            "color": tuple(int(v) for v in rng.integers(20, 230, 3)), "shade": float(rng.uniform(0.4, 1.2)),
            "view": VIEWS[int(rng.integers(4))], "u": float(rng.uniform(0.85, 1.05)) * SH}


def _draw_occluder(canvas: Image.Image, occ: dict, f: float, other: Identity, rng: np.random.Generator,
                   gait: float) -> None:
    """Draw ``occ`` at fraction ``f`` of its path (it crosses the box as the tracklet goes on)."""
    d = ImageDraw.Draw(canvas)
    SW, SH = canvas.size
    x = occ["x0"] + (occ["x1"] - occ["x0"]) * f
    if occ["kind"] == "pole":
        grey = tuple(int(min(255, c * occ["shade"])) for c in (110, 110, 115))
        d.rectangle([x - occ["width"] / 2, 0, x + occ["width"] / 2, SH], fill=grey)
    elif occ["kind"] == "low":
        d.rounded_rectangle([x, occ["top"], x + occ["length"], SH + 5], radius=0.05 * SW, fill=occ["color"])
    else:  # a passer-by, walking in step with nobody
        draw_person(canvas, other, occ["view"], x + 0.5 * SW, SH - occ["u"], occ["u"], rng, gait=-gait)


def _write_chunk(args: tuple[str, list[TrackletJob], tuple[int, int], int]) -> int:
    root, jobs, size, quality = args
    count = 0
    for job in jobs:
        folder = Path(root) / job.folder
        folder.mkdir(parents=True, exist_ok=True)
        for t, img in enumerate(render_tracklet(job, size)):
            (folder / frame_name(job.pid, job.camera, t + 1, job.clock + t)).write_bytes(encode_jpeg(img, quality))
            count += 1
    return count


def statistics(jobs: list[TrackletJob]) -> dict:
    """Per split: ids, tracklets, frames, cameras."""
    out = {}
    for split in SPLITS:
        js = [j for j in jobs if j.folder.startswith(split + "/")]
        out[split] = {"ids": len({j.pid for j in js}), "tracklets": len(js), "frames": sum(j.frames for j in js),
                      "cameras": len({j.camera.index for j in js})}
    return out


def _prepare_out(root: Path, overwrite: bool) -> None:
    if root.exists() and not root.is_dir():
        raise SynthError(f"{root}: output path exists and is not a folder")
    ours = [root / n for n in (*SPLITS, META_JSON)]
    existing = [p for p in ours if p.exists()]
    if existing and not overwrite:
        raise SynthError(f"{root}: already holds synthetic tracklets or a dataset ({existing[0].name}); "
                         "pass overwrite=True (--overwrite) to replace it")
    for p in existing:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    root.mkdir(parents=True, exist_ok=True)


def generate_tracklets(cfg: TrackletSynthConfig, out: str | Path, overwrite: bool = False,
                       progress: bool = True) -> TrackletSynthResult:
    """Write the tracklets described by ``cfg`` under ``out`` (DukeMTMC-VideoReID layout)."""
    from reidkit.utils.io import save_json

    cfg.validate()
    root = Path(out)
    _prepare_out(root, overwrite)
    t0 = time.perf_counter()
    jobs = plan(cfg)
    size = (cfg.height, cfg.width)
    chunk = 8
    chunks = [(str(root), jobs[i:i + chunk], size, cfg.jpeg_quality) for i in range(0, len(jobs), chunk)]
    total = sum(j.frames for j in jobs)
    run_chunks(_write_chunk, chunks, cfg.workers, "synth tracklets", total, progress)
    seconds = time.perf_counter() - t0
    stats = statistics(jobs)
    config = {k: v for k, v in asdict(cfg).items() if k != "workers"}  # files never depend on workers
    save_json(root / META_JSON, {"format": "reidkit.synth_tracklets/1", "layout": "duke-video",
                                 "config": config, "stats": stats})
    return TrackletSynthResult(root=root, stats=stats, num_frames=total, seconds=seconds)
