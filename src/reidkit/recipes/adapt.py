"""The USL / UDA recipe (``reidkit adapt``): typed, torch-free, checked before any data is read.

Defaults are the paper's (cluster contrast, Dai et al. 2021, as TransReID-SSL runs it, He et al. 2021
§4.3): ViT-S, drop-path 0.3, k1=30 k2=6, DBSCAN eps 0.6 min_samples 4, memory momentum 0.2 temperature
0.05 hard update, batch 256 = 32 x 8, 200 iterations per epoch, SGD lr 3.5e-4 wd 5e-4, StepLR(20, 0.1),
50 epochs. The training loop is ``reidkit.methods.adapt``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from reidkit.engine.recipe import RENAMED, CacheMode, ModelRecipe, RunRecipe, check_model, check_paths, check_positive


class AdaptError(ValueError):
    """An adaptation setup that cannot run (missing data, bad source model, existing run folder...)."""


@dataclass
class AdaptDataConfig:
    format: str = "market1501"      # the target dataset (its train split is used WITHOUT labels)
    root: str = ""
    options: dict = field(default_factory=dict)
    size: tuple[int, int] = (256, 128)
    batch_size: int = 256           # P x K: 32 pseudo-ids x 8
    num_instances: int = 8
    num_workers: int = -1
    cache: CacheMode = "auto"       # decoded + resized train images in memory (also used to extract)
    cache_max_gb: float = 4.0
    on_error: Literal["skip", "raise"] = "skip"
    quality: bool = True            # log pseudo-label quality when the train split has identity labels
    extract_batch_size: int = 256   # batch of the per-epoch feature extraction
    device_augment: bool = False    # flip/pad/crop/erasing batched on the device (same pixels)
    decode: Literal["auto", "pil", "device"] = "auto"  # memory cache fill; auto: nvjpeg on CUDA, PIL elsewhere


@dataclass
class SourceConfig:
    config: str | None = None       # UDA: a fine-tuning recipe YAML trained first on the labelled source
    overrides: list[str] = field(default_factory=list)
    model: str | None = None        # UDA: or an existing source model (.safetensors or a run folder)


@dataclass
class AdaptModelConfig(ModelRecipe):
    drop_path_rate: float = 0.3     # cluster-contrast's TransReID default
    neck_feat: Literal["before", "after"] | None = "after"  # the BN feature is clustered, trained and tested


class PseudoLabelError(ValueError):
    """Bad clustering settings or inputs."""


@dataclass
class ClusterConfig:
    distance: Literal["jaccard", "gcr"] = "jaccard"
    k1: int = 30                      # k-reciprocal neighbourhood (cluster-contrast)
    k2: int = 6                       # local query expansion
    eps: float | Literal["auto"] = "auto"  # DBSCAN radius; 'auto' = from the first epoch's k-distances
    #                                       (recipes pin 0.6 Market, 0.7 MSMT17: cluster-contrast scripts)
    min_samples: int = 4
    knn: Literal["auto", "torch", "faiss"] = "auto"
    filter: Literal["dbscan", "dash"] = "dbscan"   # 'dbscan': drop DBSCAN outliers; 'dash': also Dash
    dash_c: float = 1.0001
    dash_gamma: float = 1.27
    dash_rho_min: float = 0.05
    gcr_k: int = 30                   # GCR distance: neighbours kept per row of the sparse cosine graph
    gcr_rounds: int = 1

    def validate(self) -> "ClusterConfig":
        if self.eps != "auto" and (isinstance(self.eps, str) or not 0.0 < float(self.eps) < 1.0) \
                and self.distance == "jaccard":
            raise PseudoLabelError(f"cluster.eps={self.eps} must be 'auto' or in (0, 1) for the Jaccard distance")
        if self.min_samples < 1 or self.k1 < 1 or self.k2 < 1:
            raise PseudoLabelError("cluster.min_samples, k1 and k2 must be >= 1")
        if self.dash_gamma <= 1.0:
            raise PseudoLabelError(f"cluster.dash_gamma={self.dash_gamma} must be > 1 (a shrinking threshold)")
        return self


@dataclass
class MemoryConfig:
    temperature: float = 0.05
    momentum: float = 0.2           # weight of the OLD memory entry
    update: Literal["hard", "mean"] = "hard"


@dataclass
class AdaptSolverConfig:
    lr: float = 3.5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    epochs: int = 50
    iters: int = 200                # training iterations per epoch (per re-clustering)
    step_size: int = 20             # StepLR, per epoch
    gamma: float = 0.1
    grad_clip: float = 0.0


@dataclass
class AdaptEvalConfig:
    enabled: bool = True
    every: int = 10                 # evaluate on the target query/gallery every N epochs and at the end
    batch_size: int = 256
    metric: Literal["cosine", "euclidean"] = "cosine"
    protocol: Literal["market", "cuhk03", "no-camera"] = "market"


@dataclass
class AdaptConfig(RunRecipe):
    RENAMED: ClassVar[dict[str, str]] = RENAMED
    output: str = "runs/adapt"
    seed: int = 1
    log_every: int = 10
    mode: Literal["usl", "uda"] = "usl"
    data: AdaptDataConfig = field(default_factory=AdaptDataConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    model: AdaptModelConfig = field(default_factory=AdaptModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    solver: AdaptSolverConfig = field(default_factory=AdaptSolverConfig)
    eval: AdaptEvalConfig = field(default_factory=AdaptEvalConfig)

    def check_recipe(self) -> None:
        """What can be checked without torch or data (also run by ``load_config``)."""
        self.check_run()
        self.model.check()
        d, s = self.data, self.solver
        check_positive(**{"data.batch_size": d.batch_size, "data.num_instances": d.num_instances,
                          "data.extract_batch_size": d.extract_batch_size, "eval.batch_size": self.eval.batch_size})
        if d.batch_size % d.num_instances:
            raise AdaptError(f"data.batch_size={d.batch_size} must be a multiple of num_instances={d.num_instances}")
        if s.epochs < 1 or s.iters < 1:
            raise AdaptError(f"solver.epochs and solver.iters must be >= 1, got {s.epochs}, {s.iters}")
        if self.mode == "usl" and (self.source.config or self.source.model):
            raise AdaptError("source.* is for mode=uda; set mode=uda or drop the source settings")
        if self.mode == "uda" and not (self.source.config or self.source.model):
            raise AdaptError("mode=uda needs source.config (a fine-tuning recipe to train on the labelled source) "
                             "or source.model (an already trained source model)")
        self.cluster.validate()

    def check(self, world: int) -> None:
        self.check_recipe()
        if not self.data.root:
            raise AdaptError("data.root is not set: give the target dataset folder, e.g. `data.root=data/market1501`")
        check_model(self.model, tuple(self.model.img_size or self.data.size))

    def check_paths(self) -> None:
        """The files and folders the recipe names exist (torch-free; the CLI runs it first)."""
        check_paths({"data.root": self.data.root, "source.config": self.source.config,
                     "source.model": self.source.model}, self.output, AdaptError)
