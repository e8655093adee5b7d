"""``reidkit distill CONFIG.yaml [key=value ...] [--resume] [--out DIR]``: image-to-video distillation (TCL)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from reidkit.cli.common import console, run_recipe, user_errors


def distill_command(
    config: Path = typer.Argument(..., help="Recipe YAML, e.g. configs/video/mars_tcl_vit_small_ics.yaml."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. data.root=data/mars "
                                                             "distill.method=kd solver.epochs=10"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (overrides `output`)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the output folder from last.pt."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
) -> None:
    """Train a video teacher and an image student by mutual learning with the triplet contrast loss
    (distill.method=tcl), logits KD only (kd), no distillation (none), or train the video model alone (video)."""
    with user_errors():
        from reidkit.methods.distill_tcl import DistillConfig, distill

        run = run_recipe(DistillConfig, distill, config, overrides, out=out, out_key="output", resume=resume,
                         print_config=print_config, what="distillation")
        if run is None:
            return
        console.print(f"run folder: [bold]{run}[/] (config.yaml, log.csv, last.pt, student/teacher.safetensors, "
                      "summary.json)")


def register(app: typer.Typer) -> None:
    app.command(name="distill")(distill_command)
