"""``reidkit <verb>``: a thin command line over the Python API.

Each command group lives in its own module next to this one and exposes ``register(app)``.
"""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="reidkit",
    help="Person re-identification with vision transformers: synth, datasets, pretrain, cfs, "
         "train, adapt, extract, eval, report, index, search, serve, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One module per command group, in pipeline order. Each defines ``register(app: typer.Typer)``.
COMMAND_MODULES = [
    "synth_cmd",
    "datasets_cmd",
    "video_data_cmd",  # after datasets_cmd: adds "datasets mot-to-tracklets"
    "pretrain_cmd",
    "cfs_cmd",
    "train_cmd",
    "adapt_cmd",
    "distill_cmd",
    "models_cmd",
    "eval_cmd",
    "video_cmd",
    "index_cmd",
    "report_cmd",
    "demo_cmd",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"reidkit.cli.{_name}").register(app)


@app.callback()
def main() -> None:
    """reidkit: person re-identification with vision transformers."""


@app.command()
def version() -> None:
    """Print the reidkit version."""
    from reidkit import __version__

    typer.echo(__version__)


if __name__ == "__main__":
    app()
