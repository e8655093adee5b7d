"""The recipes of the view-based pre-training methods, CoKe and LOOK (``reidkit pretrain`` with
``method: coke | look``), torch-free: a bad value is refused by ``load_config`` before torch is
imported or any data is read. ``ViewsRecipe`` is what both share; the methods are
``reidkit.methods.pretrain_coke`` / ``pretrain_look`` (which re-export their recipe), the loop
``reidkit.methods.pretrain_loop``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from reidkit.data.multicrop_config import MultiCropConfig
from reidkit.engine.recipe import RENAMED, ModelRecipe, Precision, RecipeError, RunRecipe, check_positive
from reidkit.losses.coke_config import CoKeLossConfig, check_coke_config
from reidkit.losses.look_config import LOOKLossConfig
from reidkit.recipes.pretrain import FromScratchChecks


@dataclass
class ViewsData:
    format: str = "unlabelled"     # any reidkit.data.datasets format; its train split is used
    root: str = ""
    options: dict = field(default_factory=dict)  # reader options, e.g. {file_list: CFS_list.txt, keep_ratio: 0.5}
    batch_size: int = 64           # per process
    num_workers: int = 8
    num_views: int = 1             # global crops per image and step (1 = single view)


@dataclass
class PretrainModelConfig(ModelRecipe):
    """The backbone: a preset plus typed knobs; ``img_size`` defaults to ``crops.global_size``."""


@dataclass
class PretrainOptim:
    epochs: int = 100
    lr: float = 5e-4               # per 256 images; peak = lr * global_batch / 256
    min_lr: float = 1e-6
    warmup_epochs: int = 10
    weight_decay: float = 0.05
    clip_grad: float = 3.0         # per-parameter clip; 0 disables


@dataclass
class ViewsRecipe(FromScratchChecks, RunRecipe):
    """What the CoKe and LOOK recipes share (each adds ``method``, ``head`` and its loss section)."""

    RENAMED: ClassVar[dict[str, str]] = RENAMED
    ERROR: ClassVar[type[Exception]] = RecipeError
    precision: Precision = "fp16"
    log_every: int = 10
    checkpoint_every: int = 0      # iterations between mid-epoch checkpoints (0: end of epoch only)
    data: ViewsData = field(default_factory=ViewsData)
    crops: MultiCropConfig = field(default_factory=MultiCropConfig)  # the global-crop settings are used
    model: PretrainModelConfig = field(default_factory=PretrainModelConfig)
    solver: PretrainOptim = field(default_factory=PretrainOptim)

    def check_recipe(self) -> None:
        """What can be checked without torch or data (also run by ``load_config``)."""
        self.check_run()
        self.model.check()
        check_positive(**{"data.batch_size": self.data.batch_size, "solver.epochs": self.solver.epochs})
        if not 1 <= self.data.num_views <= 2:
            raise RecipeError(f"data.num_views={self.data.num_views}: 1 (single view) or 2 (two global crops)")
        self.check_from_scratch()


@dataclass
class CoKeHead:
    hidden_dim: int = 2048
    out_dim: int = 128
    predictor: bool = True         # the 2-layer prediction head (loss mixed by coke.beta)


@dataclass
class CoKeConfig(ViewsRecipe):
    """The CoKe recipe: the engine's run keys (output, seed, device, precision, ...), data, crops,
    model, solver (``ViewsRecipe``), and the head and the ``coke`` loss section."""

    # the keys of the first CoKe version (before the official code was read, 2026-12-07)
    RENAMED: ClassVar[dict[str, str]] = {
        **RENAMED,
        "coke.soft_labels": "coke.moving_average + coke.label_slots (the official moving-average stage)",
        "coke.soft_temp": "coke.label_temp",
        "coke.centre_momentum": "coke.moving_average (centres are averaged in the moving-average stage)",
    }
    method: Literal["coke"] = "coke"
    output: str = "runs/pretrain_coke"
    head: CoKeHead = field(default_factory=CoKeHead)
    coke: CoKeLossConfig = field(default_factory=CoKeLossConfig)

    def check_recipe(self) -> None:
        super().check_recipe()
        check_coke_config(self.coke, where="coke")


@dataclass
class LOOKHead:
    hidden_dim: int = 2048
    out_dim: int = 128             # the embedding the k-NN is computed in


@dataclass
class LOOKConfig(ViewsRecipe):
    """The LOOK recipe: the engine's run keys, data (a labelled format), crops, model, solver
    (``ViewsRecipe``), the objective, the head and the ``look`` loss section."""

    method: Literal["look"] = "look"
    objective: Literal["look", "ce"] = "look"  # ce: the cross-entropy baseline on the same pipeline
    output: str = "runs/pretrain_look"
    data: ViewsData = field(default_factory=lambda: ViewsData(format="market1501"))
    head: LOOKHead = field(default_factory=LOOKHead)
    look: LOOKLossConfig = field(default_factory=LOOKLossConfig)


__all__ = ["CoKeConfig", "CoKeHead", "LOOKConfig", "LOOKHead", "PretrainModelConfig", "PretrainOptim", "ViewsData",
           "ViewsRecipe"]
