"""``reidkit adapt CONFIG.yaml [key=value ...] [--resume] [--out DIR]``: USL / UDA by clustering."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from reidkit.cli.common import console, err_console, user_errors


def adapt_command(
    config: Path = typer.Argument(..., help="Recipe YAML, e.g. configs/adapt/market_usl_vit_small_ics.yaml."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. data.root=data/market "
                                                             "cluster.eps=0.7 cluster.filter=dash"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (overrides `output`)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in the output folder from last.pt."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
) -> None:
    """Unsupervised (mode=usl) or domain-adaptive (mode=uda) re-ID by clustering (cluster-contrast):
    per epoch extract -> sparse k-reciprocal Jaccard -> DBSCAN -> cluster memory -> train."""
    with user_errors():
        import yaml

        from reidkit.config import load_config, to_dict
        from reidkit.methods.adapt import AdaptConfig, adapt
        from reidkit.utils.checkpoint import NonFiniteLossError

        extra = list(overrides or []) + ([f"output={out}"] if out is not None else [])
        cfg = load_config(AdaptConfig, config, extra)
        if print_config:
            console.print(yaml.safe_dump(to_dict(cfg), sort_keys=False), highlight=False, markup=False)
            return
        try:
            run = adapt(cfg, resume=resume)
        except NonFiniteLossError as e:
            err_console.print(f"[bold red]adaptation stopped:[/] {e}", highlight=False)
            raise typer.Exit(code=3) from None
        console.print(f"run folder: [bold]{run}[/] (config.yaml, log.csv, last.pt, best/last.safetensors, "
                      "summary.json)")


def register(app: typer.Typer) -> None:
    app.command(name="adapt")(adapt_command)
