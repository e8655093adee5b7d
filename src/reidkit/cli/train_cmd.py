"""``reidkit train CONFIG.yaml [key=value ...] [--resume] [--out DIR]``: supervised fine-tuning."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from reidkit.cli.common import finish_run, run_recipe, user_errors


def train_command(
    config: Path = typer.Argument(..., help="Recipe YAML, e.g. configs/finetune/market_vit_small_ics.yaml."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. data.root=data/market "
                                                             "solver.lr=8e-4 precision=bf16"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (overrides `output`)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the output folder from last.pt."),
    force: bool = typer.Option(False, "--force", help="With --resume: accept a changed model/data/batch recipe."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the HTML report (CMC, training "
                                "curves, ranked lists) into the run folder at the end."),
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
