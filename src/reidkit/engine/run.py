"""The run folder and what every training loop does around its steps.

``start(cfg, resume)`` sets up the device (and DDP), checks the recipe, opens the run folder and
seeds; the returned :class:`Run` then restores and saves the whole training state (atomic, with a
checksum), guards against a NaN/inf loss, writes ``log.csv`` (and TensorBoard), shows progress with
ETA, decides the evaluation epochs and keeps the best model. A run folder holds ``config.yaml`` (the
resolved recipe), ``log.csv``, ``last.pt`` (what ``--resume`` continues from), ``last.safetensors``
and, for the methods that evaluate, ``best.safetensors``.

Resuming compares the recipe with the run's saved ``config.yaml``: every difference is printed,
and changes that would make a different run (model, data, batch) are refused unless ``force``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reidkit.config import flatten, recipe_diff, save_config, to_dict
from reidkit.engine.distributed import Dist, all_finite, barrier, gather_objects, init_distributed
from reidkit.engine.precision import autocast_dtype
from reidkit.utils.checkpoint import (CheckpointError, NonFiniteLossError, load_state, rng_state, save_state,
                                     set_rng_state)
from reidkit.utils.io import remove_stale_temporaries
from reidkit.utils.metric_log import MetricLog
from reidkit.utils.progress import make_progress
from reidkit.utils.seed import seed_everything

_console = None

# keys whose change on --resume does not make another run (data loading, evaluation, logging, where)
RESUME_HARMLESS = ("output", "device", "log_every", "compile", "data.num_workers", "data.cache", "data.cache_max_gb",
                   "data.extract_batch_size", "data.on_error", "eval.", "checkpoint_every", "keep_epochs")


def say(text: Any, main: bool = True) -> None:
    """A status line (or a rich table) on stdout, only from the main process under DDP."""
    global _console
    if main:
        if _console is None:
            from rich.console import Console
            _console = Console()
        _console.print(text, highlight=False)


def _breaking(key: str) -> bool:
    if any(key == h or (h.endswith(".") and key.startswith(h)) for h in RESUME_HARMLESS):
        return False
    return key.startswith(("model.", "data.", "crops.", "head.")) or "batch" in key


def check_resume_diff(saved: Path, cfg: Any, force: bool, error: type[Exception], main: bool = True) -> None:
    """Print how ``cfg`` differs from the run's ``config.yaml``; refuse a breaking change unless ``force``."""
    import yaml

    if not saved.is_file():
        return
    try:
        old = flatten(yaml.safe_load(saved.read_text()) or {})
    except yaml.YAMLError:
        return
    diff = recipe_diff(old, flatten(to_dict(cfg)))
    diff = [d for d in diff if d[0] != "output"]
    if not diff:
        return
    breaking = [d for d in diff if _breaking(d[0])]
    lines = [f"  {k}: {a!r} -> {b!r}{'  (breaks the run)' if _breaking(k) else '  (applied)'}" for k, a, b in diff]
    if breaking and not force:
        raise error(f"{saved.parent}: resuming with a changed model/data/batch would not continue the same run: "
                    + "; ".join(f"{k} {a!r} -> {b!r}" for k, a, b in breaking)
                    + ". Restore the recipe, choose another output folder, or pass --force")
    say("resume: the recipe differs from the run's config.yaml:\n" + "\n".join(lines), main)


@dataclass
class Run:
    """One training run: its recipe, process, device, precision and folder."""

    cfg: Any
    dist: Dist
    device: torch.device
    amp: torch.dtype | None            # autocast dtype; None = fp32
    out: Path
    resume: bool
    log: MetricLog | None = None       # rank 0 only
    best: dict = field(default_factory=lambda: {"mAP": -1.0, "epoch": 0})

    @property
    def main(self) -> bool:
        return self.dist.main

    @property
    def state_path(self) -> Path:
        return self.out / "last.pt"

    # -- state -----------------------------------------------------------------------------------
    def restore(self, map_location: str | torch.device = "cpu") -> dict | None:
        """The saved training state when resuming (checksum verified), else None."""
        return load_state(self.state_path, map_location=map_location) if self.resume else None

    def save(self, state: dict, name: str = "last.pt") -> None:
        """Atomically replace ``last.pt`` (or ``name``) with ``state`` (+ the resolved recipe); rank 0 only."""
        if self.main:
            if state.get("log_row"):  # numpy scalars -> plain numbers (weights_only loading refuses numpy)
                state = {**state, "log_row": {k: v.item() if hasattr(v, "item") else v
                                              for k, v in state["log_row"].items()}}
            save_state(self.out / name, {**state, "config": to_dict(self.cfg)})

    def check_steps(self, state: dict, iters: int, global_batch: int) -> None:
        """A per-iteration method resumes only with the iterations per epoch and global batch it saved
        (``state["iters_per_epoch"]``, ``state["global_batch"]``; a state without them passes): else its
        schedules and the sampler position would not line up. ``CheckpointError`` otherwise."""
        was = (state.get("iters_per_epoch", iters), state.get("global_batch", global_batch))
        if was != (iters, global_batch):
            raise CheckpointError(f"{self.state_path}: the run had {was[0]} iterations per epoch of {was[1]} images, "
                                  f"now {iters} of {global_batch}; resume with the same data, batch size and "
                                  "number of processes")

    def rng_states(self) -> list:
        """Every rank's RNG state, in rank order (all ranks must call it), so that each resumes exactly."""
        return gather_objects(rng_state(), self.dist)

    def restore_rng(self, states: list) -> None:
        """This rank's RNG state from a ``rng_states()`` list (rank 0's when the run had fewer ranks)."""
        set_rng_state(states[self.dist.rank] if self.dist.rank < len(states) else states[0])

    def publish(self, model: nn.Module, name: str) -> Path:
        """Write a model file (``last.safetensors``, ...) into the run folder; rank 0 only."""
        from reidkit.models import save_model

        path = self.out / name
        if self.main:
            save_model(model, path)
        return path

    # -- the loop --------------------------------------------------------------------------------
    def guard(self, loss: torch.Tensor, where: str, hint: str) -> None:
        """NaN/inf loss: stop every process with a clear message (the last good ``last.pt`` stays)."""
        if not all_finite(loss, self.dist):
            kept = f"the last good checkpoint {self.state_path} is kept" if self.state_path.exists() else \
                "no checkpoint was written yet"
            raise NonFiniteLossError(f"loss became {loss.detach().float().cpu().tolist()} at {where}; stopping "
                                     f"({kept}). {hint}")

    def log_row(self, step: int, **row: Any) -> None:
        if self.log is not None:
            self.log.log(step, **row)

    def resume_log(self, step: int, state: dict | None) -> None:
        """Drop the log rows after ``step`` (all of them when starting: a resumed run repeats them) and
        re-add the row of ``step`` kept in the state (``state["log_row"]``) when a kill came between
        replacing ``last.pt`` and writing the log."""
        if self.log is None:
            return
        self.log.truncate_after(step)
        row = (state or {}).get("log_row")
        if row and step > 0 and not any(int(float(r["step"])) == step for r in self.log.rows):
            self.log.log(step, **row)

    def progress(self):
        return make_progress(transient=False)

    @staticmethod
    def eval_due(epoch: int, epochs: int, every: int) -> bool:
        """Evaluate after (1-based) ``epoch`` of ``epochs``? Every ``every`` epochs (0: none) and after the last."""
        return eval_due(epoch, epochs, every)

    def keep_best(self, model: nn.Module, metrics: dict[str, float], epoch: int) -> dict:
        """Track the best mAP; a better model is saved as ``best.safetensors``. Returns ``self.best``."""
        self.best = keep_best(model, metrics, self.best, epoch, self.out)
        return self.best

    def say(self, text: Any) -> None:
        say(text, self.main)

    def barrier(self) -> None:
        barrier(self.dist)


def eval_due(epoch: int, epochs: int, every: int) -> bool:
    return epoch == epochs or (every > 0 and epoch % every == 0)


def keep_best(model: nn.Module, metrics: dict[str, float], best: dict, epoch: int, out: Path) -> dict:
    """``best`` (``{'mAP', 'epoch'}``) after this epoch's ``metrics``; a model with a higher mAP
    than the best so far is saved as ``out/best.safetensors``."""
    from reidkit.models import save_model

    if metrics["mAP"] <= best["mAP"]:
        return best
    save_model(model, out / "best.safetensors")
    return {"mAP": metrics["mAP"], "epoch": epoch}


def open_run_folder(out: Path, cfg: Any, resume: bool, error: type[Exception] = ValueError, write: bool = True,
                    force: bool = False) -> Path:
    """Check the run folder ``out`` against ``resume`` and return the path of its ``last.pt``.

    A folder that holds a run (a ``last.pt``) is never overwritten: ``error`` is raised unless
    ``resume``; resuming a folder without one raises ``CheckpointError``; resuming with a changed
    recipe prints the differences (and refuses breaking ones unless ``force``). With ``write`` (rank 0
    under DDP) the folder is created, stale temporary files of a killed write are removed, and ``cfg``
    is saved as ``config.yaml``.
    """
    state_path = out / "last.pt"
    if state_path.exists() and not resume:
        raise error(f"{out}: already holds a run (last.pt); resume it with --resume, or choose another "
                    "output folder")
    if resume and not state_path.exists():
        raise CheckpointError(f"{state_path}: nothing to resume (no checkpoint yet); start without --resume")
    if resume:
        check_resume_diff(out / "config.yaml", cfg, force, error, main=write)
    if write:
        out.mkdir(parents=True, exist_ok=True)
        for p in remove_stale_temporaries(out):
            say(f"removed {p.name}, a temporary file of an interrupted write")
        save_config(cfg, out / "config.yaml")
    return state_path


def start(cfg: Any, resume: bool = False, force: bool = False, error: type[Exception] = ValueError, *,
          tensorboard: bool = True, distributed: bool = True) -> Run:
    """Set up device / DDP, check the recipe (``cfg.check(world)``), open the run folder and seed.

    ``distributed=False``: a method that runs in one process (``adapt``) refuses torchrun."""
    d, device = init_distributed(cfg.device)
    if d.world > 1 and not distributed:
        raise error(f"this method runs in one process; started with WORLD_SIZE={d.world} (run it without torchrun)")
    if hasattr(cfg, "check"):
        cfg.check(d.world)
    amp = autocast_dtype(cfg.precision, device, error)
    out = Path(cfg.output)
    open_run_folder(out, cfg, resume, error, write=d.main, force=force)
    seed_everything(cfg.seed, cfg.deterministic)
    if device.type == "cuda" and not cfg.deterministic:
        torch.backends.cudnn.benchmark = True
    log = MetricLog(out / "log.csv", tensorboard=tensorboard) if d.main else None
    return Run(cfg, d, device, amp, out, resume, log)


__all__ = ["Run", "start", "say", "eval_due", "keep_best", "open_run_folder", "check_resume_diff"]
