"""Run logs a person can read and a script can plot: CSV rows (plus TensorBoard when installed)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class MetricLog:
    """Append-only CSV of ``{step, ...metrics}`` rows; new columns extend the header."""

    def __init__(self, path: str | Path, tensorboard: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():  # resuming: keep what the earlier run logged
            with open(self.path, newline="") as f:
                self.rows = list(csv.DictReader(f))
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(self.path.parent / "tb"))
            except Exception:  # tensorboard not installed: CSV only
                self._tb = None

    def log(self, step: int, **metrics: Any) -> None:
        row = {"step": step, **metrics}
        self.rows.append(row)
        header: list[str] = []
        for r in self.rows:
            header += [k for k in r if k not in header]
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=header)
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(self.path)
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, step)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run repeats them)."""
        self.rows = [r for r in self.rows if int(float(r["step"])) <= step]
