"""``reidkit adapt CONFIG.yaml [key=value ...] [--resume] [--out DIR]``: USL / UDA by clustering."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from reidkit.cli.common import console, run_recipe, user_errors


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
        from reidkit.methods.adapt import AdaptConfig, adapt

        run = run_recipe(AdaptConfig, adapt, config, overrides, out=out, out_key="output", resume=resume,
                         print_config=print_config, what="adaptation")
        if run is None:
            return
        console.print(f"run folder: [bold]{run}[/] (config.yaml, log.csv, last.pt, best/last.safetensors, "
                      "summary.json)")


def register(app: typer.Typer) -> None:
    app.command(name="adapt")(adapt_command)
