"""``reidkit adapt CONFIG.yaml [key=value ...] [--resume] [--out DIR]``: USL / UDA by clustering."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from reidkit.cli.common import (FORCE_OPTION, OUT_OPTION, PRINT_CONFIG_OPTION, REPORT_OPTION, RESUME_OPTION, console,
                                finish_run, run_recipe, user_errors)


def adapt_command(
    config: Path = typer.Argument(..., help="Recipe YAML, e.g. configs/adapt/market_usl_vit_small_ics.yaml."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. data.root=data/market "
                                                             "cluster.eps=0.7 cluster.filter=dash"),
    out: Optional[Path] = OUT_OPTION,
    resume: bool = RESUME_OPTION,
    force: bool = FORCE_OPTION,
    print_config: bool = PRINT_CONFIG_OPTION,
    report: bool = REPORT_OPTION,
) -> None:
    """Unsupervised (mode=usl) or domain-adaptive (mode=uda) re-ID by clustering (cluster-contrast):
    per epoch extract -> sparse k-reciprocal Jaccard -> DBSCAN -> cluster memory -> train."""
    with user_errors():
        from reidkit.recipes.adapt import AdaptConfig

        def run_adapt(cfg, **kw):
            from reidkit.workflows.uda import adapt_with_source
            return adapt_with_source(cfg, say=lambda text: console.print(text, highlight=False), **kw)

        run = run_recipe(AdaptConfig, run_adapt, config, overrides, out=out, resume=resume, force=force,
                         print_config=print_config, what="adaptation")
        if run is None:
            return
        finish_run(run, ("config.yaml", "log.csv", "last.pt", "best.safetensors", "last.safetensors",
                   "summary.json"), report=report)


def register(app: typer.Typer) -> None:
    app.command(name="adapt")(adapt_command)
