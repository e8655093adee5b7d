"""A training run 'killed' right after an epoch: its folder copied as it stands once that epoch's log row
is written (what a SIGKILL at that moment leaves on disk), for resume tests."""
import shutil
from pathlib import Path

from reidkit.utils import metric_log


def snapshot_after(monkeypatch, step: int, snap: Path):
    """Copy the next run's folder to ``snap`` right after log row ``step``; returns ``stop()``, which puts
    the real logger back."""
    real = metric_log.MetricLog.log

    def log(self, s, **metrics):
        real(self, s, **metrics)
        if s == step and not snap.exists():
            shutil.copytree(self.path.parent, snap)

    monkeypatch.setattr(metric_log.MetricLog, "log", log)
    return lambda: monkeypatch.setattr(metric_log.MetricLog, "log", real)
