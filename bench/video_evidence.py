"""Video re-ID evidence on synthetic tracklets: TCL vs no distillation vs plain KD vs colour histograms,
video-to-video vs image-to-image, GCR tracklet-profile re-ranking vs none. Mean +- std over seeds.

    PYTHONPATH=src python bench/video_evidence.py [--seeds 0 1 2] [--epochs 15] [--out runs/video_evidence]

Per seed s: ``reidkit synth --tracklets`` data of seed s (read back through the Duke-video reader),
then three ``reidkit distill`` runs of seed s that differ only in ``distill.method``:
  * ``none``: the image student alone (ID + triplet losses on single frames);
  * ``kd``:   + mutual logits KD with a video teacher (clips of ``--seq-len`` frames, average pooling);
  * ``tcl``:  + mutual triplet contrast loss and logits KD (the paper's method).
Image-to-video: the first frame of each query tracklet, embedded by the student, against gallery
tracklets embedded by the same student (frame features averaged); the colour-histogram baseline
(``evaluation/baselines.py``) is pooled the same way. Video-to-video vs image-to-image: the same
features, tracklets vs frames (every query frame a query). GCR: the official MARS preset with
tracklet profiles on the TCL student's image-to-video problem and on the teacher's video-to-video
problem. Tiny CPU sizes: a 64-wide 2-block ViT (``vit_micro``) at 64x32, so the absolute numbers
are those of a toy; the comparisons are the point.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from reidkit.config import from_dict
from reidkit.evaluation.featurefile import FeatureSet
from reidkit.evaluation.video import evaluate_video

METHODS = ("none", "kd", "tcl")


def make_data(seed: int, args, root: Path):
    from reidkit.data.datasets import load_dataset
    from reidkit.data.synth.tracklets import TrackletSynthConfig, generate_tracklets

    folder = root / f"synth_seed{seed}"
    if not (folder / "synth_tracklets.json").is_file():
        cfg = TrackletSynthConfig(seed=seed, train_ids=args.train_ids, test_ids=args.test_ids,
                                  distractors=args.distractors, cameras=args.cameras, min_frames=args.min_frames,
                                  max_frames=args.max_frames, height=args.size[0], width=args.size[1])
        generate_tracklets(cfg, folder, overwrite=True)
    return load_dataset("duke-video", folder)


def train(method: str, ds, seed: int, args, root: Path) -> Path:
    from reidkit.methods.distill_tcl import DistillConfig, distill

    out = root / f"seed{seed}_{method}"
    if (out / "summary.json").is_file():
        return out
    if out.exists():
        import shutil
        shutil.rmtree(out)
    net = {"preset": args.preset, "drop_path_rate": 0.0}
    cfg = from_dict(DistillConfig, {
        "data": {"size": list(args.size), "seq_len": args.seq_len, "batch_size": args.batch_size,
                 "num_instances": 2, "pad": 3},
        "teacher": net, "student": net, "distill": {"method": method},
        "solver": {"epochs": args.epochs, "warmup_epochs": 1, "lr": args.lr},
        "train": {"seed": seed}, "eval": {"enabled": False}, "output": str(out)})
    distill(cfg, dataset=ds, progress=False)
    return out


def student_features(run: Path, ds):
    from reidkit.evaluation.video_extract import extract_tracklet_features
    from reidkit.models import load_model

    model = load_model(run / "student.safetensors")
    q = extract_tracklet_features(model, ds.query, keep_frames=True, progress=False)
    g = extract_tracklet_features(model, ds.gallery, keep_frames=True, progress=False)
    return q, g


def teacher_features(run: Path, ds):
    from reidkit.evaluation.video_extract import extract_tracklet_features
    from reidkit.models.temporal import load_video_model

    model = load_video_model(run / "teacher.safetensors")
    return (extract_tracklet_features(model, ds.query, progress=False).tracklets,
            extract_tracklet_features(model, ds.gallery, progress=False).tracklets)


def colour_features(ds):
    """Colour histograms of every frame; tracklets = their mean (as the students' tracklets are pooled)."""
    from reidkit.data.video_loader import frame_records
    from reidkit.evaluation.baselines import color_histogram_features
    from reidkit.evaluation.video_extract import TrackletFeatures

    out = []
    for tracklets in (ds.query, ds.gallery):
        recs, owner = frame_records(tracklets)
        fs = color_histogram_features(recs, progress=False, on_error="raise")
        pooled = np.stack([fs.features[owner == i].mean(0) for i in range(len(tracklets))])
        t = FeatureSet(pooled, [x.pid for x in tracklets], [x.camid for x in tracklets], None, {"kind": "tracklets"})
        f = FeatureSet(fs.features, fs.pids, fs.camids, fs.paths, {"kind": "frames", "tracklet_index": owner.tolist()})
        out.append(TrackletFeatures(t, f))
    return out


def map_of(q, g, mode, **kw) -> float:
    return 100.0 * evaluate_video(q, g, mode, **kw)["mAP"]


def one_seed(seed: int, args, root: Path) -> dict[str, float]:
    ds = make_data(seed, args, root)
    row: dict[str, float] = {}
    for method in METHODS:
        run = train(method, ds, seed, args, root)
        q, g = student_features(run, ds)
        row[f"i2v {method}"] = map_of(q.frames, g.tracklets, "i2v")
        if method == "tcl":
            row["v2v student (tcl)"] = map_of(q.tracklets, g.tracklets, "v2v")
            row["i2i student (tcl)"] = map_of(q.frames, g.frames, "i2i", query_frame="all")
            row["i2v tcl + GCR"] = map_of(q.frames, g.tracklets, "i2v", rerank="gcr")
            tq, tg = teacher_features(run, ds)
            row["v2v teacher (tcl)"] = map_of(tq, tg, "v2v")
            row["v2v teacher (tcl) + GCR"] = map_of(tq, tg, "v2v", rerank="gcr")
    cq, cg = colour_features(ds)
    row["i2v colour histogram"] = map_of(cq.frames, cg.tracklets, "i2v")
    row["v2v colour histogram"] = map_of(cq.tracklets, cg.tracklets, "v2v")
    row["i2i colour histogram"] = map_of(cq.frames, cg.frames, "i2i", query_frame="all")
    row["v2v colour histogram + GCR"] = map_of(cq.tracklets, cg.tracklets, "v2v", rerank="gcr")
    stats = ds.statistics()
    row["_sizes"] = {s: {"ids": i, "tracklets": n} for s, i, n, _ in stats}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("runs/video_evidence"))
    ap.add_argument("--train-ids", type=int, default=40)
    ap.add_argument("--test-ids", type=int, default=30)
    ap.add_argument("--distractors", type=int, default=10)
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--min-frames", type=int, default=6)
    ap.add_argument("--max-frames", type=int, default=10)
    ap.add_argument("--size", type=int, nargs=2, default=[64, 32])
    ap.add_argument("--preset", default="vit_micro")
    ap.add_argument("--seq-len", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared 2-core machine, 2 threads ran 4-15x slower per step)")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    rows, start = [], time.perf_counter()
    for seed in args.seeds:
        t = time.perf_counter()
        rows.append(one_seed(seed, args, args.out))
        print(f"seed {seed}: {time.perf_counter() - t:.0f} s", flush=True)
    keys = [k for k in rows[0] if not k.startswith("_")]
    table = {k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))) for k in keys}
    print(f"\nvideo evidence: synthetic tracklets, {len(args.seeds)} seeds, {args.preset} {args.size[0]}x{args.size[1]}, "
          f"{args.epochs} epochs, clips of {args.seq_len}; sizes {rows[0]['_sizes']}")
    print(f"{'mAP (%)':32s} {'mean':>7s} {'std':>6s}   per seed")
    for k in keys:
        m, s = table[k]
        print(f"{k:32s} {m:7.1f} {s:6.1f}   " + " ".join(f"{r[k]:.1f}" for r in rows))
    print(f"total {time.perf_counter() - start:.0f} s")
    (args.out / "video_evidence.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                              "rows": rows, "table": table}, indent=1))


if __name__ == "__main__":
    main()
