"""The losses of the training methods, one module each:

* ``triplet``         batch-hard triplet (soft or hard margin): ``TripletLoss``
* ``softmax``         ID losses: ``cross_entropy`` (label smoothing), ``MarginSoftmax`` (ArcFace / CosFace / circle)
* ``center``          ``CenterLoss``
* ``dino``            ``DINOLoss``, DINO self-distillation with a centred teacher
* ``cluster_memory``  ``ClusterMemory`` for cluster-contrast, with ``cluster_centroids``
* ``coke``            ``CoKeLoss``, cluster discrimination with online constrained k-means (CoKe)
* ``look``            ``LOOKLoss``, the leave-one-out k-NN loss over a feature memory (LOOK)

``from reidkit.losses import TripletLoss`` works for every name below. A name's module is imported
on first use, so importing one loss (or this package) does not import the others or torch.
"""
from __future__ import annotations

import importlib
from typing import Any

# public name -> the module (under reidkit.losses) that defines it
_WHERE = {
    "TripletLoss": "triplet",
    "euclidean_distances": "triplet",
    "hard_example_mining": "triplet",
    "cross_entropy": "softmax",
    "MarginSoftmax": "softmax",
    "CenterLoss": "center",
    "DINOLoss": "dino",
    "ClusterMemory": "cluster_memory",
    "cluster_centroids": "cluster_memory",
    "update_memory": "cluster_memory",
    "CoKeError": "coke_config",
    "check_coke_problem": "coke_config",
    "check_coke_config": "coke_config",
    "stage_epoch": "coke_config",
    "constrained_assign": "coke",
    "dual_step": "coke",
    "OnlineConstrainedKMeans": "coke",
    "soft_cross_entropy": "coke",
    "CoKeLossConfig": "coke_config",
    "CoKeLoss": "coke",
    "LOOKError": "look_config",
    "LOOKLossConfig": "look_config",
    "look_loss": "look",
    "LOOKLoss": "look",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
