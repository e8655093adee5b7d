"""Helpers shared by the command modules: clear one-line errors, and running a training recipe."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Callable, Iterator

import typer
from rich.console import Console

from reidkit.utils.io import DiskFullError

# soft_wrap: a printed line is never broken at the console width (errors, paths and log lines
# stay whole in a log file or a pipe, where rich would otherwise wrap at 80 columns).
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


# The options of every training command (train, pretrain, adapt, distill), declared once.
OUT_OPTION = typer.Option(None, "--out", "-o", help="Run folder (overrides `output`).")
RESUME_OPTION = typer.Option(False, "--resume", help="Continue the run in the output folder from last.pt.")
FORCE_OPTION = typer.Option(False, "--force", help="With --resume: accept a changed model/data/batch recipe.")
PRINT_CONFIG_OPTION = typer.Option(False, "--print-config", help="Print the resolved config and exit.")
REPORT_OPTION = typer.Option(True, "--report/--no-report", help="Write the HTML report (CMC, training curves, "
                             "ranked lists) into the run folder at the end.")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show reidkit's own input errors (ValueError subclasses, missing files) without a traceback."""
    try:
        yield
    except (ValueError, FileNotFoundError, KeyError, DiskFullError) as e:
        if "--debug" in sys.argv:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        err_console.print(f"[bold red]error:[/] {msg}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(code=2) from None


def run_recipe(config_cls: type, run: Callable[..., Path], recipe: Path, overrides: list[str] | None, *,
               out: Path | None, out_key: str = "output", resume: bool, print_config: bool, what: str,
               force: bool = False) -> Path | None:
    """What ``train``, ``pretrain`` and ``adapt`` share: resolve the recipe YAML with its ``key=value``
    overrides (``--out`` sets ``out_key``), then either print the resolved config (``--print-config``,
    returns None) or check the recipe's paths and call ``run(cfg, resume=resume[, force=True])`` and return the
    run folder. ``config_cls`` should come from ``reidkit.recipes`` and ``run`` import its method lazily, so
    that every recipe error shows before torch is imported. A NaN/inf loss ends
    the command with exit code 3 and ``"{what} stopped: ..."``."""
    import yaml

    from reidkit.config import load_config, to_dict

    extra = list(overrides or []) + ([f"{out_key}={out}"] if out is not None else [])
    cfg = load_config(config_cls, recipe, extra)
    if print_config:
        console.print(yaml.safe_dump(to_dict(cfg), sort_keys=False), highlight=False, markup=False)
        return None
    if hasattr(cfg, "check_paths"):  # still before torch is imported: a wrong path fails in a second
        cfg.check_paths()
    try:
        return run(cfg, resume=resume, force=True) if force else run(cfg, resume=resume)
    except RuntimeError as e:
        from reidkit.utils.checkpoint import NonFiniteLossError  # imported here: it needs torch

        if not isinstance(e, NonFiniteLossError):
            raise
        err_console.print(f"[bold red]{what} stopped:[/] {e}", highlight=False)
        raise typer.Exit(code=3) from None


def finish_run(run: Path, files: tuple[str, ...], report: bool = True) -> None:
    """End of ``train``/``adapt``: on rank 0, write the HTML report into the run folder (a failure is a
    warning: the run itself is finished and kept), then name the run folder and the files it holds."""
    import os

    if os.environ.get("RANK", "0") != "0":  # torchrun: one report and one message, from rank 0
        return
    if report:
        try:
            from reidkit.report.run_report import write_run_report

            page = write_run_report(run)
            console.print(f"report: [bold]{page}[/]", highlight=False)
        except Exception as e:  # noqa: BLE001 - the report must never lose a finished run
            err_console.print(f"[yellow]warning:[/] report not written ({type(e).__name__}: {e}); the run is "
                              f"complete; rebuild it with `reidkit report {run}`", highlight=False, soft_wrap=True)
    listed = ", ".join(n for n in files if (run / n).is_file())  # best.safetensors only when it exists
    console.print(f"run folder: [bold]{run}[/] ({listed})", highlight=False)
