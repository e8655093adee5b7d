"""``reidkit extract-video`` (tracklet + frame feature files) and ``reidkit eval-video`` (V2V / I2V / I2I
with MARS rules, optional GCR re-ranking with tracklet profile vectors)."""
from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from reidkit.cli.common import console, user_errors


class Mode(str, Enum):
    auto = "auto"
    v2v = "v2v"
    i2v = "i2v"
    i2i = "i2i"


class QueryFrame(str, Enum):
    first = "first"
    middle = "middle"
    all = "all"


def open_any_model(path: Path):
    """A video model file (``save_video_model``) or an image model file (``save_model``), by its metadata."""
    from reidkit.models import load_model
    from reidkit.models.model_file import read_metadata
    from reidkit.models.temporal import FORMAT, load_video_model

    return load_video_model(path) if read_metadata(path).get("format") == FORMAT else load_model(path)


def extract_video_command(
    out: Path = typer.Option(..., "--out", "-o", help="Tracklet feature file to write (.safetensors or .npz)."),
    model: Path = typer.Option(..., "--model", "-m", help="A reidkit video or image model file."),
    data: Path = typer.Option(..., "--data", help="Dataset root."),
    fmt: str = typer.Option("duke-video", "--format", "-f", help="Video dataset format (mars, duke-video, "
                                                                 "ilids-vid, prid2011, tracklets)."),
    split: str = typer.Option("query", "--split", help="query, gallery or train."),
    frames_out: Optional[Path] = typer.Option(None, "--frames", help="Also write the per-frame features here "
                                              "(image-to-video queries, image-to-image); no frame is decoded twice."),
    sampler: str = typer.Option("all", "--sampler", help="Frames per tracklet: all, evenly or random."),
    seq_len: int = typer.Option(15, "--seq-len", help="Frames per tracklet for evenly / random."),
    pool: str = typer.Option("avg", "--pool", help="Temporal pooling for an image model: avg or max."),
    flip: bool = typer.Option(False, "--flip", help="Average with the horizontally flipped frame."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Frames per forward pass (bounds memory)."),
    device: str = typer.Option("auto", "--device"),
    workers: int = typer.Option(2, "--workers", help="Frame decoding processes."),
    normalize: bool = typer.Option(False, "--normalize", help="L2-normalise the stored features."),
) -> None:
    """Extract tracklet features of a video dataset split (and optionally its frame features)."""
    with user_errors():
        import torch

        from reidkit.data.datasets import load_dataset
        from reidkit.data.records import DatasetError, VideoDataset
        from reidkit.evaluation.featurefile import save_features
        from reidkit.evaluation.video_extract import extract_tracklet_features

        if split not in ("query", "gallery", "train"):
            raise DatasetError(f"--split must be query, gallery or train, got {split!r}")
        ds = load_dataset(fmt, data)
        if not isinstance(ds, VideoDataset):
            raise DatasetError(f"{data}: format {fmt!r} holds images, not tracklets; use `reidkit extract`")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        net = open_any_model(model).to(device)
        start = time.perf_counter()
        res = extract_tracklet_features(net, ds.split(split), sampler=sampler, seq_len=seq_len, pool=pool,
                                        flip=flip, batch_size=batch_size, device=device, num_workers=workers,
                                        keep_frames=frames_out is not None, normalize=normalize,
                                        description=f"extract {split} tracklets")
        seconds = time.perf_counter() - start
        for fs in (res.tracklets, res.frames):
            if fs is not None:
                fs.meta.update(model=str(model), split=split, source=str(data))
        save_features(res.tracklets, out)
        if frames_out is not None:
            save_features(res.frames, frames_out)
        m = res.tracklets.meta
        n_frames = sum(m["num_frames"])
        console.print(f"{len(res.tracklets)} tracklets ({n_frames} frames) of {data} [{split}] -> [bold]{out}[/]"
                      + (f" + frames -> [bold]{frames_out}[/]" if frames_out else "")
                      + f" in {seconds:.1f} s ({n_frames / max(seconds, 1e-9):.1f} frames/s)"
                      + (f"; {len(m['missing_frames'])} unreadable frame(s) left out" if m["missing_frames"] else "")
                      + (f", {len(m['dropped_tracklets'])} tracklet(s) dropped" if m["dropped_tracklets"] else ""),
                      highlight=False)


def eval_video_command(
    query_features: Path = typer.Argument(..., help="Query tracklet (v2v) or frame (i2v, i2i) feature file."),
    gallery_features: Path = typer.Argument(..., help="Gallery tracklet (v2v, i2v) or frame (i2i) feature file."),
    mode: Mode = typer.Option(Mode.auto, help="auto: from the files (tracklets/tracklets v2v, frames/tracklets "
                                              "i2v, frames/frames i2i)."),
    query_frame: QueryFrame = typer.Option(QueryFrame.first, help="i2v / i2i: which frame of a query tracklet "
                                                                  "is the query (all: every frame)."),
    rerank: str = typer.Option("none", help="none or gcr (tracklet profile vectors, official MARS preset)."),
    gcr_preset: str = typer.Option("mars", help="GCR preset: mars, market or duke."),
    gcr_statistics: str = typer.Option("all", help="GCR profile statistics from 'all' (queries + gallery, the "
                                                   "official MARS code) or 'gallery'."),
    metric: str = typer.Option("cosine", help="cosine or euclidean."),
    max_rank: int = typer.Option(50, help="Length of the CMC curve."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
) -> None:
    """Video re-ID metrics (MARS rules: same pid + same camera ignored, junk ignored, absent ids skipped)."""
    with user_errors():
        from reidkit.evaluation.featurefile import load_features
        from reidkit.evaluation.video import evaluate_video

        query, gallery = load_features(query_features), load_features(gallery_features)
        start = time.perf_counter()
        res = evaluate_video(query, gallery, None if mode == Mode.auto else mode.value, rerank=rerank,
                             query_frame=query_frame.value, gcr_preset=gcr_preset, statistics_from=gcr_statistics,
                             metric=metric, max_rank=max_rank)
        seconds = time.perf_counter() - start
        cmc = res["cmc"]
        if as_json:
            typer.echo(json.dumps({"mode": res["mode"], "rerank": rerank, "mAP": res["mAP"], "mINP": res["mINP"],
                                   "cmc": [float(c) for c in cmc], "num_valid_queries": res["num_valid_queries"],
                                   "num_skipped_queries": res["num_skipped_queries"],
                                   "num_queries_absent": res["num_queries_absent"], "seconds": round(seconds, 4)}))
            return
        from rich.table import Table

        ranks = [r for r in (1, 5, 10, 20) if r <= len(cmc)]
        table = Table(title=f"{res['mode']}: {query_features.name} vs {gallery_features.name}")
        for col in [f"R{r}" for r in ranks] + ["mAP", "mINP"]:
            table.add_column(col, justify="right")
        table.add_row(*[f"{100 * cmc[r - 1]:.2f}" for r in ranks], f"{100 * res['mAP']:.2f}", f"{100 * res['mINP']:.2f}")
        console.print(table)
        console.print(f"MARS rules, metric {metric}, re-ranking {rerank}; {res['num_valid_queries']} valid queries, "
                      f"{res['num_skipped_queries']} skipped ({res['num_queries_absent']} with an identity absent "
                      f"from the gallery); {seconds:.2f} s", highlight=False)


def register(app: typer.Typer) -> None:
    app.command(name="extract-video")(extract_video_command)
    app.command(name="eval-video")(eval_video_command)
