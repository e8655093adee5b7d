"""The fine-tuning recipe (``reidkit train``): typed, torch-free, checked before any data is read.

Defaults are the official single-GPU TransReID-SSL recipe (He et al. 2021, §4.2): ViT-S, batch 64 =
16 ids x 4, SGD lr 4e-4, 2x bias lr, 120 epochs with 20 warm-up, soft-margin triplet + cross-entropy.
The training loop is ``reidkit.methods.finetune``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from reidkit.engine.recipe import RENAMED, CacheMode, ModelRecipe, RunRecipe, check_model, check_paths, check_positive


class FinetuneError(ValueError):
    """A fine-tuning setup that cannot run (bad combination of options, existing run folder, ...)."""


@dataclass
class DatasetSource:
    format: str = "market1501"      # a reidkit.data.datasets format: market1501, msmt17, mm, folder, csv, ...
    root: str = ""
    options: dict = field(default_factory=dict)  # extra reader options, e.g. {combine_val: true}


@dataclass
class DataConfig:
    format: str = "market1501"      # the main dataset: trained on, and its query/gallery evaluated
    root: str = ""
    options: dict = field(default_factory=dict)
    extra_train: list[DatasetSource] = field(default_factory=list)  # merged into training (pid/cam offsets)
    size: tuple[int, int] = (256, 128)            # (height, width) of train and test images
    train_interpolation: Literal["bicubic", "bilinear"] = "bicubic"
    test_interpolation: Literal["bicubic", "bilinear"] = "bilinear"
    hflip: float = 0.5
    pad: int = 10
    erasing: float = 0.5                          # random erasing probability (per-pixel N(0,1) fill)
    batch_size: int = 64                          # global: P x K over all processes
    num_instances: int = 4                        # K images per identity in a batch
    num_workers: int = -1                         # -1: cores - 1 (at most 8)
    cache: CacheMode = "auto"                     # decode + resize once into memory ('auto': if it fits)
    cache_max_gb: float = 4.0
    on_error: Literal["skip", "raise"] = "skip"   # corrupt images: substitute and count, or stop
    device_augment: bool = False                  # flip/pad/crop/erasing batched on the device (same pixels)
    decode: Literal["auto", "pil", "device"] = "auto"  # memory cache fill; auto: nvjpeg on CUDA, PIL elsewhere


@dataclass
class ModelConfig(ModelRecipe):
    sync_bn: bool = False                         # DDP: synchronise BatchNorm statistics


@dataclass
class LossConfig:
    id_loss: Literal["softmax", "arcface", "cosface", "circle", "none"] = "softmax"
    id_weight: float = 1.0
    label_smoothing: float = 0.0                  # official: off
    margin_scale: float | None = None             # margin softmax s (None: the paper's default)
    margin: float | None = None                   # margin softmax m
    triplet_weight: float = 1.0
    triplet_margin: float | None = None           # None: soft margin (official)
    triplet_normalize: bool = False               # official: un-normalised Euclidean
    center_weight: float = 0.0                    # bag of tricks: 0.0005
    center_lr: float = 0.5


@dataclass
class SolverConfig:
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 4e-4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    weight_decay_bias: float = 1e-4
    bias_lr_factor: float = 2.0
    layer_decay: float = 1.0                      # AdamW only: < 1 turns on layer-wise lr decay
    betas: tuple[float, float] = (0.9, 0.999)
    epochs: int = 120
    scheduler: Literal["cosine", "cosine_iter", "step", "constant"] = "cosine"
    warmup_epochs: int = 20
    warmup_factor: float = 0.01                   # warm-up starts at this x lr
    min_lr_factor: float = 0.002                  # cosine floor, x lr
    step_size: int = 40
    gamma: float = 0.1
    grad_clip: float = 0.0                        # max global grad norm; 0 = off
    ema: float = 0.0                              # EMA decay of the weights (e.g. 0.999); 0 = off


@dataclass
class EvalConfig:
    every: int = 0                                # evaluate every N epochs (and always at the end); 0 = end only
    enabled: bool = True
    batch_size: int = 128
    flip: bool = False
    metric: Literal["cosine", "euclidean"] = "cosine"
    protocol: Literal["market", "cuhk03", "no-camera"] = "market"
    num_workers: int = -1


@dataclass
class FinetuneConfig(RunRecipe):
    RENAMED: ClassVar[dict[str, str]] = RENAMED
    output: str = "runs/finetune"
    seed: int = 1234
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def check_recipe(self) -> None:
        """What can be checked without torch or data (also run by ``load_config``)."""
        self.check_run()
        self.model.check()
        d, s = self.data, self.solver
        check_positive(**{"data.batch_size": d.batch_size, "data.num_instances": d.num_instances,
                          "eval.batch_size": self.eval.batch_size})
        if s.epochs < 1:
            raise FinetuneError(f"solver.epochs must be >= 1, got {s.epochs}")
        if s.layer_decay != 1.0 and s.optimizer != "adamw":
            raise FinetuneError("solver.layer_decay needs solver.optimizer=adamw")
        if self.loss.id_weight <= 0 and self.loss.triplet_weight <= 0:
            raise FinetuneError("both loss.id_weight and loss.triplet_weight are 0: nothing to train")

    def check(self, world: int) -> None:
        self.check_recipe()
        per_rank, rem = divmod(self.data.batch_size, world)
        if rem or per_rank % self.data.num_instances:
            raise FinetuneError(f"data.batch_size={self.data.batch_size} must split into {world} process(es) x "
                                f"a multiple of num_instances={self.data.num_instances}")
        if not self.data.root:
            raise FinetuneError("data.root is not set: give the dataset folder, e.g. `data.root=data/market1501`")
        check_model(self.model, tuple(self.model.img_size or self.data.size))

    def check_paths(self) -> None:
        """The files and folders the recipe names exist (torch-free; the CLI runs it first)."""
        check_paths({"data.root": self.data.root, **{f"data.extra_train[{i}].root": x.root
                                                     for i, x in enumerate(self.data.extra_train)}},
                    self.output, FinetuneError)
