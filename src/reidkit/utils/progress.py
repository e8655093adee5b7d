"""Progress with ETA for long work: a rich bar on a terminal, plain log lines in a file or a pipe.

``make_progress()`` returns an object with rich's ``Progress`` interface (``add_task``, ``advance``,
``update``, ``console``, context manager). On a terminal it *is* a rich ``Progress``. When stdout is
not a terminal (``reidkit train ... > run.log``, ``| tee``, a job scheduler) a bar cannot be drawn,
and rich would print nothing until the end, so :class:`PlainProgress` prints (to stderr, keeping
stdout for results and ``--json``) one unwrapped line per task every ``REIDKIT_PROGRESS_EVERY`` steps (default 50) and at least every
``REIDKIT_PROGRESS_SECONDS`` (default 30 s): done/total, percent, rate (it/s, and images/s when the
task has ``images_per_step``), elapsed, ETA and the task's description (which carries the loss).
``REIDKIT_PROGRESS=0`` turns both off.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    return os.environ.get("REIDKIT_PROGRESS", "1") != "0"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def make_progress(transient: bool = True, stream: TextIO | None = None):
    """A rich progress bar when stdout is a terminal; else :class:`PlainProgress` lines on stderr
    (so ``--json`` output on stdout stays clean), or on ``stream`` when one is given."""
    if stream is not None and not _is_terminal(stream):
        return PlainProgress(stream=stream, disable=not progress_enabled())
    if stream is None and not _is_terminal(sys.stdout):
        return PlainProgress(stream=sys.stderr, disable=not progress_enabled())
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TaskProgressColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    transient=transient, disable=not progress_enabled())


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class _Task:
    description: str
    total: float | None
    visible: bool = True
    completed: float = 0.0
    start: float = field(default_factory=time.perf_counter)
    last_print_step: float = 0.0
    last_print_time: float = field(default_factory=time.perf_counter)
    fields: dict[str, Any] = field(default_factory=dict)


class _PlainConsole:
    """``progress.console.print(...)`` for callers that log through the bar: rich markup rendered
    to plain text, lines never wrapped (a log file has no width)."""

    def __init__(self, stream: TextIO):
        from rich.console import Console

        self._console = Console(file=stream, soft_wrap=True, color_system=None, highlight=False, width=160)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        kwargs.setdefault("soft_wrap", True)
        self._console.print(*objects, **kwargs)
        self._console.file.flush()


class PlainProgress:
    """Rich ``Progress``'s interface, printing plain lines (see the module docstring)."""

    def __init__(self, stream: TextIO | None = None, every: int | None = None, seconds: float | None = None,
                 disable: bool = False):
        self.stream = stream if stream is not None else sys.stdout
        self.every = max(1, int(every if every is not None else os.environ.get("REIDKIT_PROGRESS_EVERY", 50)))
        self.seconds = float(seconds if seconds is not None else os.environ.get("REIDKIT_PROGRESS_SECONDS", 30))
        self.disable = disable
        self.tasks: dict[int, _Task] = {}
        self.console = _PlainConsole(self.stream)

    # -- rich's Progress interface
    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        for task in self.tasks.values():  # a final line for a task not reported at its last step
            if task.completed > task.last_print_step:
                self._print(task)

    def add_task(self, description: str, total: float | None = None, visible: bool = True,
                 completed: float = 0, **fields: Any) -> int:
        tid = len(self.tasks)
        self.tasks[tid] = _Task(description, total, visible, float(completed), fields=fields)
        self.tasks[tid].last_print_step = float(completed)
        return tid

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, description: str | None = None, total: float | None = None,
               completed: float | None = None, advance: float | None = None, visible: bool | None = None,
               **fields: Any) -> None:
        task = self.tasks[task_id]
        if description is not None:
            task.description = description
        if total is not None:
            task.total = total
        if visible is not None:
            task.visible = visible
        task.fields.update(fields)
        if completed is not None:
            task.completed = float(completed)
        if advance:
            task.completed += advance
        now = time.perf_counter()
        due = (task.completed - task.last_print_step >= self.every
               or (task.completed > task.last_print_step and now - task.last_print_time >= self.seconds))
        finished = task.total is not None and task.completed >= task.total > task.last_print_step
        if due or finished:
            self._print(task)

    # -- output
    def line(self, task: _Task) -> str:
        elapsed = time.perf_counter() - task.start
        done = task.completed
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [task.description]
        if task.total:
            parts.append(f"{done:g}/{task.total:g} ({100 * done / task.total:.0f}%)")
        else:
            parts.append(f"{done:g}")
        speed = f"{rate:.2f} it/s"
        per = task.fields.get("images_per_step")
        if per:
            speed += f", {rate * float(per):.1f} img/s"
        parts.append(speed)
        parts.append(f"elapsed {_clock(elapsed)}")
        if task.total and rate > 0:
            parts.append(f"ETA {_clock((task.total - done) / rate)}")
        return "  ".join(parts)

    def _print(self, task: _Task) -> None:
        task.last_print_step, task.last_print_time = task.completed, time.perf_counter()
        if self.disable or not task.visible:
            return
        self.stream.write(self.line(task) + "\n")
        self.stream.flush()


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar and ETA."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
