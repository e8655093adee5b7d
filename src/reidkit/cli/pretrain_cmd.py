"""``reidkit pretrain CONFIG.yaml [k=v ...] [--resume]`` and ``reidkit export-backbone CKPT OUT``."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from reidkit.cli.common import (FORCE_OPTION, OUT_OPTION, PRINT_CONFIG_OPTION, RESUME_OPTION, console, run_recipe,
                                user_errors)


def pretrain_command(
    config: Path = typer.Argument(..., help="Recipe YAML, e.g. configs/pretrain/lup_vit_small_ics_cfs.yaml."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. data.root=data/LUP "
                                                             "solver.epochs=20 precision=bf16"),
    out: Optional[Path] = OUT_OPTION,
    resume: bool = RESUME_OPTION,
    force: bool = FORCE_OPTION,
    print_config: bool = PRINT_CONFIG_OPTION,
) -> None:
    """Pre-training: `method: dino` (default; TransReID-SSL) or `coke` on unlabelled person images,
    `method: look` on a labelled source dataset.
    Multi-GPU: `torchrun --nproc_per_node=8 -m reidkit.cli.main pretrain ...`."""
    with user_errors():
        from reidkit.recipes.pretrain import PretrainConfig, recipe_method

        method = recipe_method(config, overrides)  # `method: dino | coke | look` (default dino)
        if method == "coke":
            from reidkit.recipes.pretrain_views import CoKeConfig as PretrainConfig

            def pretrain(cfg, **kw):
                from reidkit.methods.pretrain_coke import pretrain_coke
                return pretrain_coke(cfg, **kw)
        elif method == "look":
            from reidkit.recipes.pretrain_views import LOOKConfig as PretrainConfig

            def pretrain(cfg, **kw):
                from reidkit.methods.pretrain_look import pretrain_look
                return pretrain_look(cfg, **kw)
        else:
            def pretrain(cfg, **kw):
                from reidkit.methods.pretrain_dino import pretrain
                return pretrain(cfg, **kw)

        run = run_recipe(PretrainConfig, pretrain, config, overrides, out=out, out_key="output", resume=resume,
                         force=force, print_config=print_config, what="pre-training")
        if run is None:
            return
        console.print(f"run folder: [bold]{run}[/] (config.yaml, log.csv, last.pt; last.safetensors = the "
                      "teacher backbone, ready for `reidkit train ... model.weights=...`)")


def export_backbone_command(
    checkpoint: Path = typer.Argument(..., help="Our last.pt, or an official DINO checkpoint.pth / converted "
                                                "backbone."),
    out: Path = typer.Argument(..., help="Output model file (.safetensors)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Model preset for official checkpoints "
                                                                "(inferred from the tensors when omitted)."),
    which: str = typer.Option("teacher", "--which", help="teacher (default, as the official converter) or "
                                                         "student."),
    img_size: Optional[str] = typer.Option(None, "--img-size", help="H,W of the exported model, e.g. 384,128."),
) -> None:
    """Turn a DINO pre-training checkpoint into backbone weights (a reidkit model file) for `reidkit train`."""
    with user_errors():
        from reidkit.methods.pretrain_dino import export_backbone

        overrides = {}
        if img_size:
            try:
                h, w = (int(v) for v in img_size.split(","))
            except ValueError:
                raise ValueError(f"--img-size must look like 256,128, got {img_size!r}") from None
            overrides["img_size"] = (h, w)
        path, report = export_backbone(checkpoint, out, preset=preset, which=which, **overrides)
        console.print(report.summary(), highlight=False, markup=False)
        console.print(f"wrote [bold]{path}[/]")


def register(app: typer.Typer) -> None:
    app.command(name="pretrain")(pretrain_command)
    app.command(name="export-backbone")(export_backbone_command)
