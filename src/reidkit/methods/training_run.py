"""What the training methods' runs share: the run folder, the autocast precision, and the
query / gallery evaluation that picks the best model. Used by ``finetune``, ``adapt`` and
``pretrain_dino``; each of them still reads top to bottom, these are the steps they have in common.

A run folder holds ``config.yaml`` (the resolved recipe), ``log.csv``, ``last.pt`` (the training
state ``--resume`` continues from), ``last.safetensors`` and, for the methods that evaluate,
``best.safetensors``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from reidkit.utils.checkpoint import CheckpointError

_console = Console()


def open_run_folder(out: Path, cfg: Any, resume: bool, error: type[Exception] = ValueError,
                    write: bool = True) -> Path:
    """Check the run folder ``out`` against ``resume`` and return the path of its ``last.pt``.

    A folder that holds a run (a ``last.pt``) is never overwritten: ``error`` is raised unless
    ``resume``; resuming a folder without one raises ``CheckpointError``. With ``write`` (rank 0
    under DDP) the folder is created and ``cfg`` saved to it as ``config.yaml``.
    """
    from reidkit.config import save_config

    state_path = out / "last.pt"
    if state_path.exists() and not resume:
        raise error(f"{out}: already holds a run (last.pt); resume it with --resume, or choose another "
                    "output folder")
    if resume and not state_path.exists():
        raise CheckpointError(f"{state_path}: nothing to resume (no checkpoint yet); start without --resume")
    if write:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    return state_path


def autocast_dtype(amp: str, device: torch.device, error: type[Exception] = ValueError) -> torch.dtype | None:
    """``solver.amp`` ('none' | 'bf16' | 'fp16') -> the autocast dtype, ``None`` for float32."""
    if amp == "none":
        return None
    if amp == "fp16" and device.type != "cuda":
        raise error("solver.amp=fp16 needs a GPU (it relies on a gradient scaler); use amp=bf16 on CPU")
    return torch.bfloat16 if amp == "bf16" else torch.float16


def evaluate_query_gallery(model: nn.Module, dataset, transform, batch_size: int, device: torch.device,
                           metric: str, protocol: str, amp: torch.dtype | None = None,
                           **extract_options: Any) -> dict[str, float]:
    """mAP, R1, R5, R10, mINP (percent) of ``model`` on ``dataset.query`` against ``dataset.gallery``.
    ``extract_options`` (``flip``, ``num_workers``, ``progress``) go to ``extract_features``."""
    from reidkit.evaluation.extract import extract_features
    from reidkit.evaluation.metrics import evaluate

    kw = dict(transform=transform, batch_size=batch_size, device=device, amp_dtype=amp, **extract_options)
    q = extract_features(model, dataset.query, description="extract query", **kw)
    g = extract_features(model, dataset.gallery, description="extract gallery", **kw)
    m = evaluate(query=q, gallery=g, metric=metric, protocol=protocol)
    cmc = m["cmc"]
    rank = lambda r: float(cmc[min(r, len(cmc)) - 1]) * 100  # noqa: E731
    return {"mAP": float(m["mAP"]) * 100, "R1": rank(1), "R5": rank(5), "R10": rank(10),
            "mINP": float(m["mINP"]) * 100}


def eval_due(epoch: int, epochs: int, every: int) -> bool:
    """Evaluate after (1-based) ``epoch`` of ``epochs``? Every ``every`` epochs (0: none) and after the last."""
    return epoch == epochs or (every > 0 and epoch % every == 0)


def keep_best(model: nn.Module, metrics: dict[str, float], best: dict, epoch: int, out: Path) -> dict:
    """``best`` (``{'mAP', 'epoch'}``) after this epoch's ``metrics``; a model with a higher mAP
    than the best so far is saved as ``out/best.safetensors``."""
    from reidkit.models import save_model

    if metrics["mAP"] <= best["mAP"]:
        return best
    save_model(model, out / "best.safetensors")
    return {"mAP": metrics["mAP"], "epoch": epoch}


def say(text: Any, main: bool = True) -> None:
    """A status line (or a rich table) on stdout, only from the main process under DDP."""
    if main:
        _console.print(text, highlight=False)


__all__ = ["open_run_folder", "autocast_dtype", "evaluate_query_gallery", "eval_due", "keep_best", "say"]
