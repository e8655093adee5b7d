"""CoKe's loss settings and their checks, torch-free, so that ``reidkit pretrain`` refuses a bad CoKe
recipe before torch is imported (the method is in ``reidkit.losses.coke``)."""
from __future__ import annotations

from dataclasses import dataclass, field


class CoKeError(ValueError):
    """A CoKe problem that has no solution (K above the dataset size, unsatisfiable minimum size)."""


def check_coke_problem(num_instances: int, ks: list[int] | tuple[int, ...], min_size_ratio: float,
                       where: str = "coke") -> None:
    """Raise ``CoKeError`` (one line) unless every clustering in ``ks`` can be solved on ``num_instances``."""
    if not ks:
        raise CoKeError(f"{where}.num_clusters is empty: give at least one K, e.g. [3000]")
    for k in ks:
        if k < 2:
            raise CoKeError(f"{where}.num_clusters: K={k}; each clustering needs K >= 2")
        if k > num_instances:
            raise CoKeError(f"{where}.num_clusters: K={k} is larger than the dataset ({num_instances} images); "
                            f"use K <= {num_instances}")
    if not 0.0 <= min_size_ratio <= 1.0:
        raise CoKeError(f"{where}.min_size_ratio={min_size_ratio}: every cluster must hold at least "
                        f"{min_size_ratio} x N/K instances, so the clusters would need {min_size_ratio} x N > N "
                        "instances; use a ratio in [0, 1] (the paper: 0.4)")


@dataclass
class CoKeLossConfig:
    num_clusters: list[int] = field(default_factory=lambda: [3000, 4000, 5000])  # one clustering per K
    min_size_ratio: float = 0.4     # r: every cluster holds >= r N / K instances
    dual_lr: float = 20.0           # eta
    temperature: float = 0.1        # T (official: 0.1 one view, 0.05 two views)
    beta: float = 1.0               # weight of the prediction-head term, 1 - beta the projection head's
    #                                 (official: 1 one view, 0.5 two views)
    view_alpha: float = 0.2         # V >= 2: weight of the label; 1 - alpha: the other views' prediction
    moving_average: bool = True     # the second stage: moving-average labels and centres
    moving_average_from: float = 0.8  # ... from this fraction of solver.epochs on (official: 801 of 1001)
    label_slots: int = 5            # entries kept of each averaged label
    label_temp: float = 0.5         # q ∝ exp(ybar / label_temp)


def check_coke_config(cfg: CoKeLossConfig, where: str = "coke") -> None:
    """Raise ``CoKeError`` naming the key unless the loss settings are usable."""
    for key, lo, hi in (("beta", 0.0, 1.0), ("view_alpha", 0.0, 1.0), ("moving_average_from", 0.0, 1.0)):
        v = getattr(cfg, key)
        if not lo <= v <= hi:
            raise CoKeError(f"{where}.{key}={v}: use a value in [{lo}, {hi}]")
    for key in ("temperature", "label_temp"):
        if getattr(cfg, key) <= 0:
            raise CoKeError(f"{where}.{key}={getattr(cfg, key)}: must be > 0")
    if cfg.dual_lr < 0:
        raise CoKeError(f"{where}.dual_lr={cfg.dual_lr}: the dual step must be >= 0 (official: 20)")
    if cfg.label_slots < 1:
        raise CoKeError(f"{where}.label_slots={cfg.label_slots}: keep at least 1 entry per label (official: 5)")


def stage_epoch(cfg: CoKeLossConfig, epochs: int | None) -> int | None:
    """The first epoch of the moving-average stage for a run of ``epochs`` (None: no stage)."""
    if not cfg.moving_average or epochs is None:
        return None
    return int(round(cfg.moving_average_from * epochs))
