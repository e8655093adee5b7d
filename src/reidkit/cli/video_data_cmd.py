"""Tracklet data on the command line: ``reidkit datasets mot-to-tracklets`` and the tracklet report of
``reidkit datasets check`` (``check_tracklets``, called for formats whose reader returns a VideoDataset)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from reidkit.cli.common import console, user_errors



def mot_to_tracklets(
    source: Path = typer.Argument(..., help="A MOT sequence folder (img1/ + gt/gt.txt), a tracks file "
                                            "(frame,id,x,y,w,h,conf,...: tracker output or gt.txt), a folder of "
                                            "sequences (MOT17/train) or of tracker results <sequence>.txt."),
    out: Path = typer.Argument(..., help="Output tracklet folder: <split>/<pid>/<camera>/<tracklet>/<frame>.jpg."),
    frames: Optional[Path] = typer.Option(None, "--frames", help="Frames folder of a tracks file (default: img1/ "
                                                                "next to it); for a results folder, the folder "
                                                                "of the sequences."),
    camera: Optional[str] = typer.Option(None, "--camera", help="Camera folder name of a single sequence "
                                                                "(default: the sequence name)."),
    split: str = typer.Option("gallery", "--split", help="train, query or gallery."),
    max_gap: Optional[int] = typer.Option(None, "--max-gap", help="Cut a track where more than this many frames "
                                                                  "are missing between two boxes (default: never)."),
    min_frames: int = typer.Option(1, "--min-frames", help="Leave out tracklets with fewer boxes (counted)."),
    pid_offset: int = typer.Option(0, "--pid-offset", help="Added to track ids (pids = track id + offset)."),
    global_ids: bool = typer.Option(False, "--global-ids", help="Track ids are the same people in every sequence "
                                                                "(multi-camera ground truth); default: pids are "
                                                                "offset per sequence so they never collide."),
    gt: Optional[bool] = typer.Option(None, "--gt/--no-gt", help="Read as ground truth (flag, class, visibility "
                                                                 "columns); default: when the file is gt.txt."),
    classes: str = typer.Option("1", "--classes", help="Ground-truth classes kept, comma separated (1 = pedestrian)."),
    min_visibility: float = typer.Option(0.0, "--min-visibility", help="Ground truth: least visibility kept."),
    min_conf: Optional[float] = typer.Option(None, "--min-conf", help="Tracker output: least confidence kept."),
    strict: bool = typer.Option(True, "--strict/--no-strict", help="Stop on malformed rows (default), or skip "
                                                                   "them and list every one in OUT/<camera>.problems.txt."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the tracks and frames, write nothing."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace this camera's tracklets in OUT."),
    workers: int = typer.Option(2, "--workers", help="Threads decoding frames and writing crops."),
    quality: int = typer.Option(95, "--quality", help="JPEG quality of the crops."),
) -> None:
    """Turn MOTChallenge tracks into a tracklet folder: one tracklet per track, crops clipped to the image.

    The result is a re-ID gallery (or train/query split) read by '--format tracklets'.
    """
    with user_errors():
        from reidkit.data.datasets.mot import MotError, convert_sequences
        from reidkit.utils.progress import make_progress

        try:
            keep = tuple(int(c) for c in classes.split(",") if c.strip())
        except ValueError:
            raise MotError(f"--classes {classes!r}: expected comma-separated integers, e.g. 1,7") from None
        with make_progress() as bar:
            task = bar.add_task("cutting crops", total=None, visible=not dry_run)
            results = convert_sequences(source, out, frames=frames, camera=camera, global_ids=global_ids,
                                        pid_offset=pid_offset, dry_run=dry_run, split=split, max_gap=max_gap,
                                        min_frames=min_frames, gt=gt, classes=keep, min_visibility=min_visibility,
                                        min_conf=min_conf, strict=strict, overwrite=overwrite, jpeg_quality=quality,
                                        workers=workers, on_progress=lambda n: bar.advance(task, n))
        verb = "would write" if dry_run else "wrote"
        for res in results:
            console.print(f"{res.camera}: {res.tracks} track(s) -> {verb} {res.tracklets} tracklet(s), {res.crops} "
                          f"crop(s) to {res.out / res.split} in {res.seconds:.1f} s", highlight=False)
            for note in res.notes:
                console.print(f"[dim]note:[/] {note}", highlight=False)
            for msg in res.problems:
                console.print(f"[yellow]skipped:[/] {msg}", highlight=False)
            if res.problems_file is not None:
                console.print(f"every skipped row is listed in {res.problems_file}", highlight=False)
        if not dry_run:
            console.print(f"crops and boxes: {out}/<camera>.crops.csv; check with 'reidkit datasets check {out} "
                          f"--format tracklets'", highlight=False)


def check_tracklets(ds, *, as_json: bool, verify_images: bool, workers: int, bad_list: Path | None) -> None:
    """``reidkit datasets check`` for a tracklet dataset: ids / tracklets / frames / cameras per split,
    tracklet lengths, every problem, and (``verify_images``) a decode of every frame. Exit 1 when unusable."""
    from reidkit.data.datasets.video_common import tracklet_lengths
    from reidkit.data.images import verify_images as verify
    from reidkit.utils.io import atomic_write_text
    from reidkit.utils.progress import make_progress

    errors = list(getattr(ds, "errors", []))
    warnings = [p for p in ds.problems if p not in errors]
    corrupt: list[tuple[str, str]] = []
    if verify_images:
        paths = sorted({p for split in (ds.train, ds.query, ds.gallery) for t in split for p in t.frames})
        with make_progress() as progress:
            task = progress.add_task("decoding frames", total=len(paths))
            corrupt = verify(paths, workers=workers, on_progress=lambda n: progress.advance(task, n))
        if bad_list is not None:
            atomic_write_text(bad_list, "".join(f"{p}\n" for p, _ in corrupt))
    rows = [(s, ids, n, cams, *tracklet_lengths(ds.split(s))) for s, ids, n, cams in ds.statistics()]
    if as_json:
        typer.echo(json.dumps({
            "name": ds.name, "root": getattr(ds, "root", ""), "kind": "tracklets",
            "splits": {s: {"ids": i, "tracklets": n, "cameras": c, "frames": f, "min_frames": lo,
                           "mean_frames": round(mean, 2), "max_frames": hi}
                       for s, i, n, c, f, lo, mean, hi in rows},
            "errors": errors, "warnings": warnings, "notes": list(getattr(ds, "notes", [])),
            "corrupt_frames": [{"path": p, "problem": m} for p, m in corrupt] if verify_images else None,
        }))
    else:
        from rich.table import Table

        table = Table(title=f"{ds.name} (tracklets): {getattr(ds, 'root', '')}", title_justify="left")
        for col in ("subset", "# ids", "# tracklets", "# frames", "# cameras", "length min/mean/max"):
            table.add_column(col, justify="left" if col == "subset" else "right")
        for s, ids, n, cams, frames, lo, mean, hi in rows:
            table.add_row(s, str(ids), str(n), str(frames), str(cams), f"{lo} / {mean:.1f} / {hi}" if n else "-")
        console.print(table)
        from reidkit.cli.datasets_cmd import print_problems

        print_problems(ds, errors, warnings, corrupt if verify_images else None, bad_list, "frame")
        if not errors and not warnings and not corrupt:
            console.print("[green]no problems found[/]")
    if errors or corrupt:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    from reidkit.cli.datasets_cmd import datasets_app

    datasets_app.command("mot-to-tracklets")(mot_to_tracklets)
