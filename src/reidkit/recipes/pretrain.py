"""The DINO pre-training recipe (``reidkit pretrain``): typed, torch-free, checked before any data is read.

Defaults are the paper's (Caron et al. 2021 DINO, as TransReID-SSL runs it on LUPerson, He et al. 2021
§3.1): ViT-S/16, 256x128, 2+8 crops, 100 epochs, global batch 512, AdamW lr 5e-4 x batch/256, wd 0.04 ->
0.4, teacher 0.996 -> 1, out_dim 65536. The training loop is ``reidkit.methods.pretrain_dino``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from reidkit.data.multicrop_config import MultiCropConfig
from reidkit.engine.recipe import (RENAMED, ModelRecipe, Precision, RunRecipe, check_model, check_paths,
                                   check_positive)


class PretrainError(ValueError):
    """A pre-training setup that cannot run (empty pool, bad batch size, existing run folder, ...)."""


class FromScratchChecks:
    """The checks every pre-training recipe (DINO's, CoKe's and LOOK's) shares: it trains a backbone
    from random weights, so ``model.weights`` is refused; ``checkpoint_every`` is >= 0; and before
    training, ``data.root`` is set and the model builds at its image size (``crops.global_size`` by
    default). ``ERROR``, ``WHO`` and ``ROOT_HINT`` word each recipe's refusals."""

    ERROR: ClassVar[type[Exception]] = PretrainError
    WHO: ClassVar[str] = "pre-training"
    ROOT_HINT: ClassVar[str] = "give the dataset folder"

    def check_from_scratch(self) -> None:
        if self.model.weights:
            raise self.ERROR(f"model.weights: {self.WHO} starts from random weights; drop model.weights")
        if self.checkpoint_every < 0:
            raise self.ERROR(f"checkpoint_every={self.checkpoint_every} must be >= 0")

    def check(self, world: int) -> None:
        self.check_recipe()
        if not self.data.root:
            raise self.ERROR(f"data.root is empty: {self.ROOT_HINT}")
        check_model(self.model, tuple(self.model.img_size or self.crops.global_size))


@dataclass
class PretrainData:
    root: str = ""                 # image folder (scanned recursively), or the image root of ``list_file``
    list_file: str | None = None   # ordered list (e.g. a CFS selection), paths relative to ``root``
    keep_num: int | None = None    # keep the first N of the list (the paper: 2508146 = 60% of LUPerson)
    keep_ratio: float | None = None
    batch_size: int = 64           # per process; the paper: 64 x 8 GPUs = 512
    num_workers: int = 8
    device_augment: bool = False   # multi-crop batched on the device from uint8 (same draws, not PIL's pixels)


@dataclass
class PretrainModel(ModelRecipe):
    """The backbone: a preset plus typed knobs (``drop_path_rate`` for the student only; the teacher
    uses 0). ``img_size`` defaults to ``crops.global_size``."""


@dataclass
class PretrainHead:
    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    nlayers: int = 3
    use_bn: bool = False
    norm_last_layer: bool = True


@dataclass
class PretrainLoss:
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    center_momentum: float = 0.9


@dataclass
class PretrainSolver:
    epochs: int = 100
    lr: float = 5e-4               # per 256 images; the peak lr is lr * global_batch / 256
    min_lr: float = 1e-6
    warmup_epochs: int = 10
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    momentum_teacher: float = 0.996
    clip_grad: float = 3.0         # per-parameter gradient-norm clip; 0 disables
    freeze_last_layer: int = 1     # epochs during which the head's last layer gets no update


@dataclass
class PretrainConfig(FromScratchChecks, RunRecipe):
    RENAMED: ClassVar[dict[str, str]] = RENAMED
    WHO: ClassVar[str] = "DINO pre-training"
    ROOT_HINT: ClassVar[str] = "give the image folder (or the image root of data.list_file)"
    method: Literal["dino"] = "dino"  # `reidkit pretrain` dispatches on it (coke, look: their own recipes)
    output: str = "runs/pretrain"
    precision: Precision = "fp16"
    log_every: int = 10            # iterations between log.csv rows
    checkpoint_every: int = 0      # iterations between mid-epoch checkpoints (0: end of epoch only)
    keep_epochs: list[int] = field(default_factory=list)  # also keep checkpoint_XXXX.pt after these epochs
    data: PretrainData = field(default_factory=PretrainData)
    crops: MultiCropConfig = field(default_factory=MultiCropConfig)
    model: PretrainModel = field(default_factory=PretrainModel)
    head: PretrainHead = field(default_factory=PretrainHead)
    loss: PretrainLoss = field(default_factory=PretrainLoss)
    solver: PretrainSolver = field(default_factory=PretrainSolver)

    def check_recipe(self) -> None:
        """What can be checked without torch or data (also run by ``load_config``)."""
        self.check_run()
        self.model.check()
        check_positive(**{"data.batch_size": self.data.batch_size, "solver.epochs": self.solver.epochs,
                          "head.out_dim": self.head.out_dim})
        self.check_from_scratch()

    def check_paths(self) -> None:
        """The files and folders the recipe names exist (torch-free; the CLI runs it first)."""
        check_paths({"data.root": self.data.root, "data.list_file": self.data.list_file}, self.output, PretrainError)


METHODS = ("dino", "coke", "look")


def recipe_method(recipe: str | Path, overrides: list[str] | None = None) -> str:
    """The ``method:`` of a pre-training recipe (after ``_base_`` and ``method=...`` overrides); dino when absent."""
    from reidkit.config import ConfigError, _read_yaml, apply_overrides

    data = apply_overrides(_read_yaml(Path(recipe)), [o for o in overrides or [] if o.startswith("method=")])
    method = str(data.get("method", "dino"))
    if method not in METHODS:
        raise ConfigError(f"{recipe}: method: {method!r} is not a pre-training method; use one of {', '.join(METHODS)}")
    return method
