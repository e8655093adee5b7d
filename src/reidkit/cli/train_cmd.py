"""``reidkit train CONFIG.yaml [key=value ...] [--resume] [--out DIR]``: supervised fine-tuning."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from reidkit.cli.common import (FORCE_OPTION, OUT_OPTION, PRINT_CONFIG_OPTION, REPORT_OPTION, RESUME_OPTION,
                                finish_run, run_recipe, user_errors)


def train_command(
    config: Path = typer.Argument(..., help="Recipe YAML, e.g. configs/finetune/market_vit_small_ics.yaml."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. data.root=data/market "
                                                             "solver.lr=8e-4 precision=bf16"),
    out: Optional[Path] = OUT_OPTION,
    resume: bool = RESUME_OPTION,
    force: bool = FORCE_OPTION,
    print_config: bool = PRINT_CONFIG_OPTION,
    report: bool = REPORT_OPTION,
) -> None:
    """Fine-tune a ReID model (TransReID-SSL recipe by default). Multi-GPU: `torchrun --nproc_per_node=4
    -m reidkit.cli.main train ...`."""
    with user_errors():
        from reidkit.recipes.finetune import FinetuneConfig

        def train(cfg, **kw):
            from reidkit.methods.finetune import train
            return train(cfg, **kw)

        run = run_recipe(FinetuneConfig, train, config, overrides, out=out, out_key="output", resume=resume,
                         force=force, print_config=print_config, what="training")
        if run is None:
            return
        finish_run(run, ("config.yaml", "log.csv", "last.pt", "best.safetensors", "last.safetensors"), report=report)


def register(app: typer.Typer) -> None:
    app.command(name="train")(train_command)
