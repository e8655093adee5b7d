"""``reidkit synth OUT``: write the synthetic benchmark (Market-1501 folders per city + pool)."""
from __future__ import annotations

from pathlib import Path

import typer

from reidkit.cli.common import console, user_errors


def synth(
    out: Path = typer.Argument(..., help="Output folder (one Market-1501 folder per city, plus pool/)."),
    ids: int = typer.Option(200, "--ids", help="Training identities per city (and as many test ids)."),
    test_ids: int = typer.Option(None, "--test-ids", help="Test identities per city (default: --ids)."),
    cameras: int = typer.Option(6, "--cameras", help="Cameras per city (2..9)."),
    domains: int = typer.Option(3, "--domains", help="Cities with distinct styles (1..4)."),
    images_per_camera: float = typer.Option(2.5, "--images-per-camera", help="Mean images of an id per camera."),
    distractors: int = typer.Option(150, "--distractors", help="pid 0000 gallery images per city."),
    junk: int = typer.Option(100, "--junk", help="pid -1 gallery images per city."),
    pool_size: int = typer.Option(4000, "--pool-size", help="Unlabelled pre-training pool images (0: none)."),
    relevant_ratio: float = typer.Option(0.5, "--relevant-ratio", help="Share of person images in the pool."),
    seed: int = typer.Option(0, "--seed"),
    height: int = typer.Option(128, "--height", help="Image height (e.g. 128 or 256)."),
    width: int = typer.Option(64, "--width", help="Image width (e.g. 64 or 128)."),
    workers: int = typer.Option(1, "--workers", help="Rendering processes (files do not depend on it)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier benchmark in OUT."),
) -> None:
    """Generate the synthetic ReID benchmark: procedural pedestrians, cameras and cities."""
    with user_errors():
        from reidkit.data.synth import SynthConfig, generate

        cfg = SynthConfig(seed=seed, domains=domains, train_ids=ids, test_ids=ids if test_ids is None else test_ids,
                          cameras=cameras, images_per_camera=images_per_camera, distractors=distractors,
                          junk=junk, pool_size=pool_size, pool_relevant_ratio=relevant_ratio,
                          height=height, width=width, workers=workers)
        result = generate(cfg, out, overwrite=overwrite)
        print_synth_stats(result)


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
