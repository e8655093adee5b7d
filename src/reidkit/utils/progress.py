"""Progress bars with ETA for long work (rich), quiet when output is not a terminal-friendly run."""
from __future__ import annotations

import os
from typing import Iterable, Iterator, TypeVar

from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

T = TypeVar("T")


def progress_enabled() -> bool:
    return os.environ.get("REIDKIT_PROGRESS", "1") != "0"


def make_progress(transient: bool = True) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TaskProgressColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    transient=transient, disable=not progress_enabled())


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar and ETA."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
