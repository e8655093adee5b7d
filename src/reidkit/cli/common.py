"""Helpers shared by the command modules: turning known errors into clear one-line messages."""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show reidkit's own input errors (ValueError subclasses, missing files) without a traceback."""
    try:
        yield
    except (ValueError, FileNotFoundError, KeyError) as e:
        if "--debug" in sys.argv:
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        err_console.print(f"[bold red]error:[/] {msg}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(code=2) from None
