"""``reidkit report RUN_DIR``: (re)build the HTML report of a training or adaptation run folder."""
from __future__ import annotations

from pathlib import Path

import typer

from reidkit.cli.common import console, user_errors


def report_command(
    run_dir: Path = typer.Argument(..., help="A run folder of `reidkit train` or `reidkit adapt` "
                                   "(config.yaml, log.csv, best/last.safetensors)."),
    ranked: int = typer.Option(8, "--ranked", help="Ranked-list strips drawn (queries picked evenly by seed)."),
    curves_only: bool = typer.Option(False, "--curves-only", help="Training curves only: no feature extraction."),
) -> None:
    """Write RUN_DIR/report/index.html: results, CMC curve, training curves and ranked lists."""
    with user_errors():
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: run folder not found" + (" (it is a file; pass the folder "
                                    "that holds config.yaml and log.csv)" if run_dir.exists() else ""))
        from reidkit.report.run_report import write_run_report

        page = write_run_report(run_dir, ranked_queries=ranked, evaluate_model=not curves_only)
        console.print(f"report: [bold]{page}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    app.command(name="report")(report_command)
