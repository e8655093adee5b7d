"""The image-to-video distillation recipe (``reidkit distill``, TCL): typed, torch-free, checked before any
data is read.

A ``RunRecipe`` (output, seed, device, precision, log_every at the top level, as every recipe) with: data
(tracklets, clip length), teacher (a video model: frame backbone + temporal ``pool``), student (an image
model), distill (method and weights), loss, solver, eval. Defaults follow TCL (arXiv 2201.08887) where it
says, the fine-tuning recipe elsewhere. The training loop is ``reidkit.methods.distill_tcl``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from reidkit.engine.recipe import RENAMED, RunRecipe, check_paths, check_positive


class DistillError(ValueError):
    """A distillation setup that cannot run (bad option combination, existing run folder, data)."""


@dataclass
class VideoDataConfig:
    format: str = "mars"                          # a video reader of reidkit.data.datasets
    root: str = ""
    options: dict = field(default_factory=dict)
    size: tuple[int, int] = (256, 128)            # (height, width) of every frame
    seq_len: int = 8                              # frames per training clip (teacher input)
    sampler: Literal["random", "evenly"] = "random"
    hflip: float = 0.5
    pad: int = 10
    erasing: float = 0.5
    batch_size: int = 32                          # P x K tracklets
    num_instances: int = 4
    num_workers: int = 0
    on_error: Literal["skip", "raise"] = "skip"


@dataclass
class NetConfig:
    preset: str = "vit_small_ics"
    weights: str | None = None                    # pre-trained backbone (DINO / official / timm / ours)
    pool: Literal["avg", "max", "attention"] = "avg"   # temporal pooling (teacher only)
    drop_path_rate: float = 0.1
    overrides: dict = field(default_factory=dict)


@dataclass
class DistillLossConfig:
    method: Literal["none", "kd", "tcl", "video"] = "tcl"
    mutual: bool = True
    tcl_weight: float = 1.0                       # alpha
    tcl_tau: float = 0.1
    kd_weight: float = 1.0                        # beta
    kd_temperature: float = 4.0


@dataclass
class LossConfig:
    id_weight: float = 1.0
    label_smoothing: float = 0.1
    triplet_weight: float = 1.0
    triplet_margin: float | None = None           # None: soft margin


@dataclass
class SolverConfig:
    lr: float = 3.5e-4
    weight_decay: float = 0.05
    epochs: int = 60
    warmup_epochs: float = 5
    warmup_factor: float = 0.01
    min_lr_factor: float = 0.01
    grad_clip: float = 0.0


@dataclass
class VideoEvalConfig:
    enabled: bool = True
    every: int = 0                                # also every N epochs; 0 = at the end only
    batch_size: int = 128
    sampler: Literal["all", "evenly"] = "all"     # gallery / query tracklet frames
    seq_len: int = 15
    query_frame: Literal["first", "middle", "all"] = "first"
    metric: Literal["cosine", "euclidean"] = "cosine"


@dataclass
class DistillConfig(RunRecipe):
    RENAMED: ClassVar[dict[str, str]] = RENAMED
    data: VideoDataConfig = field(default_factory=VideoDataConfig)
    teacher: NetConfig = field(default_factory=NetConfig)
    student: NetConfig = field(default_factory=NetConfig)
    distill: DistillLossConfig = field(default_factory=DistillLossConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    eval: VideoEvalConfig = field(default_factory=VideoEvalConfig)
    output: str = "runs/distill_tcl"

    def check_recipe(self) -> None:
        """What can be checked without torch or data (also run by ``load_config``)."""
        self.check_run()
        d = self.data
        check_positive(**{"data.batch_size": d.batch_size, "data.num_instances": d.num_instances,
                          "eval.batch_size": self.eval.batch_size})
        if d.batch_size % d.num_instances:
            raise DistillError(f"data.batch_size={d.batch_size} is not a multiple of num_instances={d.num_instances}")
        if d.seq_len < 1 or self.solver.epochs < 1:
            raise DistillError(f"data.seq_len and solver.epochs must be >= 1 (got {d.seq_len}, {self.solver.epochs})")
        if self.distill.method == "tcl" and self.distill.tcl_weight <= 0 and self.distill.kd_weight <= 0:
            raise DistillError("distill.method=tcl with tcl_weight and kd_weight both 0 distils nothing")
        for where, net in self.nets():
            if not 0.0 <= net.drop_path_rate < 1.0:
                raise DistillError(f"{where}.drop_path_rate={net.drop_path_rate} must be in [0, 1)")

    def check(self, world: int = 1) -> None:
        """Before any data or model is touched (``engine.run.start``): the recipe, and each network's preset
        with its overrides at ``data.size`` (``reidkit.models.presets.get_spec``; imports torch)."""
        from reidkit.models.presets import get_spec

        self.check_recipe()
        for where, net in self.nets():
            try:
                get_spec(net.preset, img_size=tuple(self.data.size), drop_path_rate=net.drop_path_rate,
                         **net.overrides)
            except ValueError as e:
                raise DistillError(f"{where}: {e}") from None

    def check_paths(self) -> None:
        """The files and folders the recipe names exist (torch-free; the CLI runs it first)."""
        check_paths({"data.root": self.data.root, "teacher.weights": self.teacher.weights,
                     "student.weights": self.student.weights}, self.output, DistillError)

    def nets(self) -> list[tuple[str, NetConfig]]:
        """The networks ``distill.method`` trains: the student (not for ``video``), the teacher (not for ``none``)."""
        m = self.distill.method
        return ([("student", self.student)] if m != "video" else []) + \
            ([("teacher", self.teacher)] if m != "none" else [])
