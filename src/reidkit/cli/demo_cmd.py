"""``reidkit demo --out runs/demo [--ssl] [--adapt] [--fast]``: the whole pipeline on synthetic data."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from reidkit.cli.common import console, user_errors


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Folder for data, runs and the report."),
    fast: bool = typer.Option(False, "--fast", help="Tiny data, 2 epochs: a one-minute smoke run."),
    ssl: bool = typer.Option(False, "--ssl", help="DINO pre-training on the synthetic pool first."),
    adapt: bool = typer.Option(False, "--adapt", help="Also adapt to a second city without its labels."),
    seed: int = typer.Option(0, "--seed"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the fine-tuning epochs."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="Fine-tuning recipe YAML "
                                          "(default: configs/finetune/synth_tiny_ics.yaml)."),
    workers: int = typer.Option(2, "--workers", help="Rendering and data-loading processes."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides of the fine-tuning recipe."),
) -> None:
    """Generate the synthetic benchmark, train a small ViT (ICS stem), evaluate it next to a
    colour-histogram baseline, and write an HTML report. A re-run reuses finished steps."""
    with user_errors():
        from reidkit.cli.synth_cmd import print_synth_stats
        from reidkit.workflows.demo import DemoConfig, run_demo

        result = run_demo(DemoConfig(out=str(out), seed=seed, fast=fast, ssl=ssl, adapt=adapt, epochs=epochs,
                                     train_recipe=str(recipe) if recipe else None, workers=workers,
                                     train_overrides=list(overrides or [])),
                          say=lambda text: console.print(text, highlight=False), show_synth=print_synth_stats)
        print_results(result.rows, result.notes, result.report, result.seconds)


def print_results(rows: list[dict], notes: list[str], report: Path, seconds: dict[str, float]) -> None:
    """The demo's results table, its notes, timings and the report path."""
    from rich.table import Table

    table = Table(title="results on the synthetic benchmark (percent)")
    table.add_column("model")
    for k in ("mAP", "R1", "R5", "R10", "mINP"):
        table.add_column(k, justify="right")
    for r in rows:
        table.add_row(r["model"], *(f"{r[k]:.1f}" if k in r else "-" for k in ("mAP", "R1", "R5", "R10", "mINP")))
    console.print(table)
    for n in notes:
        console.print(f"note: {n}", highlight=False)
    console.print("time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()), highlight=False)
    console.print(f"report: [bold]{report}[/]")


def register(app: typer.Typer) -> None:
    app.command(name="demo")(demo)
