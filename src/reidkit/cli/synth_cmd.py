"""``reidkit synth OUT``: write the synthetic benchmark (Market-1501 folders per city + pool).

``reidkit synth OUT --tracklets`` writes synthetic tracklets in the DukeMTMC-VideoReID layout instead.
"""
from __future__ import annotations

from pathlib import Path

import typer

from reidkit.cli.common import console, user_errors


def synth(
    out: Path = typer.Argument(..., help="Output folder (one Market-1501 folder per city, plus pool/; "
                                         "with --tracklets: train/, query/, gallery/ of DukeMTMC-VideoReID)."),
    ids: int = typer.Option(None, "--ids", help="Training identities per city (and as many test ids) "
                                               "[default: 200; with --tracklets 100]."),
    test_ids: int = typer.Option(None, "--test-ids", help="Test identities per city (default: --ids)."),
    cameras: int = typer.Option(None, "--cameras", help="Cameras per city (2..9) [default: 6; with --tracklets 4]."),
    domains: int = typer.Option(3, "--domains", help="Cities with distinct styles (1..4)."),
    images_per_camera: float = typer.Option(2.5, "--images-per-camera", help="Mean images of an id per camera."),
    distractors: int = typer.Option(None, "--distractors", help="pid 0000 gallery images per city [default: "
                                                               "150; with --tracklets: gallery-only ids, 20]."),
    junk: int = typer.Option(100, "--junk", help="pid -1 gallery images per city."),
    pool_size: int = typer.Option(4000, "--pool-size", help="Unlabelled pre-training pool images (0: none)."),
    relevant_ratio: float = typer.Option(0.5, "--relevant-ratio", help="Share of person images in the pool."),
    seed: int = typer.Option(0, "--seed"),
    height: int = typer.Option(128, "--height", help="Image height (e.g. 128 or 256)."),
    width: int = typer.Option(64, "--width", help="Image width (e.g. 64 or 128)."),
    workers: int = typer.Option(1, "--workers", help="Rendering processes (files do not depend on it)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier benchmark in OUT."),
    tracklets: bool = typer.Option(False, "--tracklets",
                                   help="Write walking sequences (tracklets) per identity and camera of one "
                                        "city in the DukeMTMC-VideoReID layout; read them with --format "
                                        "duke-video. --domains, --images-per-camera, --junk, --pool-size and "
                                        "--relevant-ratio do not apply."),
    tracklets_per_camera: float = typer.Option(1.3, "--tracklets-per-camera",
                                               help="--tracklets: mean tracklets of an id per camera."),
    min_frames: int = typer.Option(8, "--min-frames", help="--tracklets: shortest tracklet, in frames."),
    max_frames: int = typer.Option(16, "--max-frames", help="--tracklets: longest tracklet, in frames."),
) -> None:
    """Generate the synthetic ReID benchmark: procedural pedestrians, cameras and cities.

    With --tracklets: walking sequences (gait, drift, turns, moving occluders, detector jitter) of one
    city, in the DukeMTMC-VideoReID layout.
    """
    with user_errors():
        if tracklets:
            from reidkit.data.synth.tracklets import TrackletSynthConfig, generate_tracklets

            d = TrackletSynthConfig()
            train_ids = d.train_ids if ids is None else ids
            tcfg = TrackletSynthConfig(
                seed=seed, train_ids=train_ids, test_ids=train_ids if test_ids is None else test_ids,
                distractors=d.distractors if distractors is None else distractors,
                cameras=d.cameras if cameras is None else cameras, tracklets_per_camera=tracklets_per_camera,
                min_frames=min_frames, max_frames=max_frames, height=height, width=width, workers=workers)
            print_tracklet_stats(generate_tracklets(tcfg, out, overwrite=overwrite))
            return
        from reidkit.data.synth import SynthConfig, generate

        ids = 200 if ids is None else ids
        cfg = SynthConfig(seed=seed, domains=domains, train_ids=ids, test_ids=ids if test_ids is None else test_ids,
                          cameras=6 if cameras is None else cameras, images_per_camera=images_per_camera,
                          distractors=150 if distractors is None else distractors,
                          junk=junk, pool_size=pool_size, pool_relevant_ratio=relevant_ratio,
                          height=height, width=width, workers=workers)
        result = generate(cfg, out, overwrite=overwrite)
        print_synth_stats(result)


def print_tracklet_stats(result) -> None:
    """The statistics table of generated tracklets, and the rendering speed."""
    from rich.table import Table

    table = Table(title=f"synthetic tracklets in {result.root} (DukeMTMC-VideoReID layout)")
    for col in ("split", "ids", "tracklets", "frames", "cameras"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, s in result.stats.items():
        table.add_row(split, str(s["ids"]), str(s["tracklets"]), str(s["frames"]), str(s["cameras"]))
    console.print(table)
    console.print(f"{result.num_frames} frames in {result.seconds:.1f} s "
                  f"([bold]{result.frames_per_second:.0f} frames/s[/]); read with "
                  f"'reidkit datasets check {result.root} --format duke-video'")


def print_synth_stats(result) -> None:
    """The statistics table of a generated benchmark, and the rendering speed."""
    from rich.table import Table

    table = Table(title=f"synthetic benchmark in {result.root}")
    for col in ("city", "split", "ids", "images", "cameras", "distractors (0)", "junk (-1)"):
        table.add_column(col, justify="left" if col in ("city", "split") else "right")
    for name, splits in result.stats.items():
        if name == "pool":
            continue
        for split, s in splits.items():
            table.add_row(name if split == "train" else "", split, str(s["ids"]), str(s["images"]),
                          str(s["cameras"]), str(s["distractors"]), str(s["junk"]))
    console.print(table)
    pool = result.stats.get("pool")
    if pool:
        console.print(f"pool: {pool['images']} images, {pool['relevant']} relevant persons; irrelevant: "
                      f"{pool['scene']} scene, {pool['object']} object, {pool['offstyle']} off-style "
                      f"(labels in {result.relevance_csv.name}, for evaluation only)")
    console.print(f"{result.num_images} images in {result.seconds:.1f} s "
                  f"([bold]{result.images_per_second:.0f} images/s[/])")


def register(app: typer.Typer) -> None:
    app.command(name="synth")(synth)
