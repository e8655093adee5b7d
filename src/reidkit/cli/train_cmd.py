"""``reidkit train CONFIG.yaml [key=value ...] [--resume] [--out DIR]``: supervised fine-tuning."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from reidkit.cli.common import console, err_console, user_errors


def train_command(
    config: Path = typer.Argument(..., help="Recipe YAML, e.g. configs/finetune/market_vit_small_ics.yaml."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. data.root=data/market "
                                                             "solver.lr=8e-4 solver.amp=bf16"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (overrides `output`)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the output folder from last.pt."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
) -> None:
    """Fine-tune a ReID model (TransReID-SSL recipe by default). Multi-GPU: `torchrun --nproc_per_node=4
    -m reidkit.cli.main train ...`."""
    with user_errors():
        import yaml

        from reidkit.config import load_config, to_dict
        from reidkit.methods.finetune import FinetuneConfig, train
        from reidkit.utils.checkpoint import NonFiniteLossError

        extra = list(overrides or []) + ([f"output={out}"] if out is not None else [])
        cfg = load_config(FinetuneConfig, config, extra)
        if print_config:
            console.print(yaml.safe_dump(to_dict(cfg), sort_keys=False), highlight=False, markup=False)
            return
        try:
            run = train(cfg, resume=resume)
        except NonFiniteLossError as e:
            err_console.print(f"[bold red]training stopped:[/] {e}", highlight=False)
            raise typer.Exit(code=3) from None
        console.print(f"run folder: [bold]{run}[/] (config.yaml, log.csv, last.pt, best/last.safetensors)")


def register(app: typer.Typer) -> None:
    app.command(name="train")(train_command)
