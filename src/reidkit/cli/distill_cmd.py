"""``reidkit distill CONFIG.yaml [key=value ...] [--resume] [--out DIR]``: image-to-video distillation (TCL)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from reidkit.cli.common import (FORCE_OPTION, OUT_OPTION, PRINT_CONFIG_OPTION, RESUME_OPTION, console, run_recipe,
                                user_errors)


def distill_command(
    config: Path = typer.Argument(..., help="Recipe YAML, e.g. configs/video/mars_tcl_vit_small_ics.yaml."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. data.root=data/mars "
                                                             "distill.method=kd solver.epochs=10"),
    out: Optional[Path] = OUT_OPTION,
    resume: bool = RESUME_OPTION,
    print_config: bool = PRINT_CONFIG_OPTION,
    force: bool = FORCE_OPTION,
) -> None:
    """Train a video teacher and an image student by mutual learning with the triplet contrast loss
    (distill.method=tcl), logits KD only (kd), no distillation (none), or train the video model alone (video)."""
    with user_errors():
        from reidkit.recipes.distill import DistillConfig

        def distill(cfg, **kw):
            from reidkit.methods.distill_tcl import distill
            return distill(cfg, **kw)

        run = run_recipe(DistillConfig, distill, config, overrides, out=out, out_key="output", resume=resume,
                         print_config=print_config, what="distillation", force=force)
        if run is None:
            return
        console.print(f"run folder: [bold]{run}[/] (config.yaml, log.csv, last.pt, student/teacher.safetensors, "
                      "summary.json)")


def register(app: typer.Typer) -> None:
    app.command(name="distill")(distill_command)
