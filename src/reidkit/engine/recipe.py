"""The one recipe vocabulary of ``reidkit train``, ``pretrain`` and ``adapt`` (torch-free).

Every training recipe starts with the same top-level keys:

    output         run folder (config.yaml, log.csv, last.pt, *.safetensors)
    seed           one seed for Python, NumPy and torch
    device         auto | cpu | cuda | cuda:N (under torchrun: the local rank's GPU)
    precision      fp32 | bf16 | fp16 (fp16 needs CUDA: autocast + GradScaler)
    deterministic  torch deterministic algorithms (slower on GPU)
    compile        torch.compile the trained network (GPU speed; off by default)
    log_every      iterations between progress / log lines

``data.num_workers`` sets the loader processes and ``eval.every`` the evaluation cadence in every
recipe that has them. ``model`` holds the typed model knobs (:class:`ModelRecipe`).

Keys of the older vocabularies are refused with the new name (:data:`RENAMED`).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from reidkit.config import ConfigError as RecipeError

Precision = Literal["fp32", "bf16", "fp16"]
CacheMode = Literal["auto", "memory", "none"]   # decoded training images: in memory when they fit, always, never


@dataclass
class RunRecipe:
    """The keys every training recipe shares; a method's recipe subclasses this."""

    output: str = "runs/run"
    seed: int = 0
    device: str = "auto"
    precision: Precision = "fp32"
    deterministic: bool = False
    compile: bool = False
    log_every: int = 20

    def check_run(self) -> None:
        if not self.output:
            raise RecipeError("output is empty: give the run folder, e.g. output=runs/my_run")
        if self.log_every < 1:
            raise RecipeError(f"log_every={self.log_every} must be >= 1")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda", "mps") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise RecipeError(f"device={dev!r}: expected auto, cpu, cuda or cuda:N")


@dataclass
class ModelRecipe:
    """A model preset plus typed knobs; a knob left at None keeps the preset's value."""

    preset: str = "vit_small"                     # see `reidkit models`
    weights: str | None = None                    # pre-trained backbone (DINO / official / timm / ours)
    drop_path_rate: float = 0.1
    stem: Literal["patchify", "conv", "ics"] | None = None
    knn_k: int | float | None = None              # k-NN attention: keys per query (int) or a ratio in (0, 1]
    knn_last_n: int | None = None                 # k-NN attention in the last n blocks only
    sie_cameras: int | None = None                # > 0: SIE camera embedding for this many cameras
    pool: Literal["cls", "avg", "gem"] | None = None
    neck_feat: Literal["before", "after"] | None = None   # test feature before / after the BNNeck's BN
    img_size: tuple[int, int] | None = None       # None: the recipe's image size
    # architecture, for custom sizes (None: the preset's)
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    patch_size: int | None = None

    def knobs(self) -> dict:
        """The set knobs as ``build_model`` keyword arguments (drop_path_rate always); fields a method's
        subclass adds (e.g. ``sync_bn``) are not model knobs."""
        skip = ("preset", "weights")
        return {f.name: getattr(self, f.name) for f in fields(ModelRecipe)
                if f.name not in skip and getattr(self, f.name) is not None}

    def check(self, where: str = "model") -> None:
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise RecipeError(f"{where}.drop_path_rate={self.drop_path_rate} must be in [0, 1)")
        k = self.knn_k
        if isinstance(k, bool) or (isinstance(k, int) and k < 1) or (isinstance(k, float) and not 0.0 < k <= 1.0):
            raise RecipeError(f"{where}.knn_k={k!r}: give a key count >= 1 (an integer) or a ratio in (0, 1] "
                              "(a float, 1.0 = dense)")
        if self.knn_last_n is not None and self.knn_last_n < 1:
            raise RecipeError(f"{where}.knn_last_n={self.knn_last_n} must be >= 1")
        if self.sie_cameras is not None and self.sie_cameras < 0:
            raise RecipeError(f"{where}.sie_cameras={self.sie_cameras} must be >= 0")
        if self.img_size is not None and min(self.img_size) < 1:
            raise RecipeError(f"{where}.img_size={list(self.img_size)} must be positive")
        for name in ("embed_dim", "depth", "num_heads", "patch_size"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise RecipeError(f"{where}.{name}={v} must be >= 1")
        if self.embed_dim and self.num_heads and self.embed_dim % self.num_heads:
            raise RecipeError(f"{where}.embed_dim={self.embed_dim} must be a multiple of num_heads={self.num_heads}")


def check_model(model: ModelRecipe, img_size: tuple[int, int], **fixed) -> None:
    """The preset exists and takes these knobs (``reidkit.models.presets.get_spec``; imports torch)."""
    from reidkit.models.presets import get_spec

    get_spec(model.preset, **{**model.knobs(), "img_size": tuple(img_size), **fixed})


def check_paths(paths: dict[str, str | None], output: str, error: type[Exception] = RecipeError) -> None:
    """Every named path that is set exists, and ``output`` is not an existing file (torch-free)."""
    for key, value in paths.items():
        if value and not Path(value).expanduser().exists():
            raise error(f"{key}={value}: no such file or folder")
    if output and Path(output).is_file():
        raise error(f"output={output} is a file; give a folder for the run")


def check_positive(**values: int | float) -> None:
    """``check_positive(**{"data.batch_size": 0})`` raises a RecipeError naming the key."""
    for key, v in values.items():
        if v is None or v <= 0:
            raise RecipeError(f"{key}={v} must be > 0")


_MODEL_OVERRIDES = ("model.overrides was replaced by typed fields: model.stem, model.knn_k, model.knn_last_n, "
                    "model.drop_path_rate, model.sie_cameras, model.pool, model.neck_feat, model.img_size, "
                    "model.embed_dim, model.depth, model.num_heads, model.patch_size")

RENAMED: dict[str, str] = {
    "output_dir": "output",
    "train.seed": "seed",
    "train.device": "device",
    "train.deterministic": "deterministic",
    "train.log_every": "log_every",
    "train.sync_bn": "model.sync_bn",
    "train.extract_batch_size": "data.extract_batch_size",
    "solver.amp": "precision (fp32 | bf16 | fp16; amp=none is precision=fp32)",
    "model.overrides": _MODEL_OVERRIDES,
}


def refuse_renamed(data: dict, where: str, renamed: dict[str, str] | None = None) -> None:
    """Raise a RecipeError for the first key of an older vocabulary found in the nested ``data``."""
    for old, new in (RENAMED if renamed is None else renamed).items():
        node = data
        *parents, last = old.split(".")
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and last in node:
            if new.startswith("model.overrides"):
                raise RecipeError(f"{where}: {new}")
            raise RecipeError(f"{where}: `{old}` is now `{new}`")
