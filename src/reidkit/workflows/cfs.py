"""CFS as a workflow: train the two proxy models, score the pool, write the subset lists
(TransReID-SSL, He et al. 2021, §3.2 "Catastrophic Forgetting Score").

    source proxy  a short DINO run on the pool                    (reidkit.methods.pretrain_dino)
    target proxy  the source proxy fine-tuned on the labelled target (reidkit.methods.finetune)
    scores        CFS(x) = cos(f_source(x), f_target(x)), best first (reidkit.methods.cfs.score)
    lists         cfs_list.txt (the head) and random_list.txt (same size, for ablations)

Each finished step is reused on a rerun; the DINO and fine-tuning runs resume.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar


@dataclass
class CFSConfig:
    """``reidkit cfs run``: pool + labelled target -> proxies -> scores -> subset lists."""

    RENAMED: ClassVar[dict[str, str]] = {"output_dir": "output"}
    output: str = "runs/cfs"
    pool: str = ""                          # unlabelled image folder (or list file) to rank
    source_model: str | None = None         # an existing source proxy; None: train it (source_pretrain)
    target_model: str | None = None         # an existing target proxy; None: fine-tune it (target_finetune)
    source_pretrain: str | None = None      # PretrainConfig YAML for the short DINO run (pool set here)
    source_overrides: list[str] = field(default_factory=list)
    target_finetune: str | None = None      # FinetuneConfig YAML for the target fine-tune (weights set here)
    target_overrides: list[str] = field(default_factory=list)
    keep_ratio: float | None = 0.5
    keep_num: int | None = None
    write_random: bool = True               # also write a random subset of the same size
    seed: int = 0
    batch_size: int = 128
    num_workers: int = 2
    shard_size: int = 8192
    device: str = "auto"


def run(cfg: CFSConfig, config_dir: str | os.PathLike | None = None) -> Path:
    """Run the workflow; each finished step is reused on a rerun (the DINO run resumes).

    Writes under ``output``: ``source/`` (DINO run), ``target/`` (fine-tune run),
    ``scores.tsv``, ``cfs_list.txt`` and ``random_list.txt``. Relative recipe paths
    (``source_pretrain``, ``target_finetune``) are looked up as given, then in ``config_dir``.
    """
    from reidkit.config import load_config, save_config
    from reidkit.methods import cfs

    def recipe(path: str | None) -> str | None:
        if path and not Path(path).is_file() and config_dir and (Path(config_dir) / path).is_file():
            return str(Path(config_dir) / path)
        return path

    cfg.source_pretrain, cfg.target_finetune = recipe(cfg.source_pretrain), recipe(cfg.target_finetune)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "cfs_config.yaml")
    if not cfg.pool:
        raise cfs.CFSError("cfs run: 'pool' (the unlabelled image folder) is empty")

    # 1. source proxy: a short DINO run on the pool
    source = Path(cfg.source_model) if cfg.source_model else out / "source" / "last.safetensors"
    if not cfg.source_model:
        from reidkit.methods.pretrain_dino import PretrainConfig, pretrain

        if not cfg.source_pretrain:
            raise cfs.CFSError("cfs run: give source_model or source_pretrain (a pretrain YAML)")
        run_dir = out / "source"
        pcfg = load_config(PretrainConfig, cfg.source_pretrain,
                           [f"output={run_dir}", *_pool_overrides(cfg.pool), *cfg.source_overrides])
        if not _pretrain_done(run_dir, pcfg.solver.epochs):
            pretrain(pcfg, resume=(run_dir / "last.pt").is_file())

    # 2. target proxy: the source proxy fine-tuned on the labelled target
    target = Path(cfg.target_model) if cfg.target_model else out / "target" / "last.safetensors"
    if not cfg.target_model and not (out / "target" / "summary.json").is_file():
        from reidkit.methods.finetune import FinetuneConfig, train

        if not cfg.target_finetune:
            raise cfs.CFSError("cfs run: give target_model or target_finetune (a finetune YAML)")
        fcfg = load_config(FinetuneConfig, cfg.target_finetune,
                           [f"output={out / 'target'}", f"model.weights={source}", *cfg.target_overrides])
        train(fcfg, resume=(out / "target" / "last.pt").is_file())

    # 3. scores, 4. selections
    scores = cfs.score(source, target, cfg.pool, out / "scores.tsv", batch_size=cfg.batch_size,
                       num_workers=cfg.num_workers, device=cfg.device, shard_size=cfg.shard_size)
    cfs.select(scores, out / "cfs_list.txt", keep_ratio=cfg.keep_ratio, keep_num=cfg.keep_num)
    if cfg.write_random:
        cfs.select(scores, out / "random_list.txt", keep_ratio=cfg.keep_ratio, keep_num=cfg.keep_num,
                   random=True, seed=cfg.seed)
    return out


def _pool_overrides(pool: str) -> list[str]:
    p = Path(pool)
    if p.is_file():
        return [f"data.root={p.parent}", f"data.list_file={p}"]
    return [f"data.root={p}"]


def _pretrain_done(run_dir: Path, epochs: int) -> bool:
    from reidkit.utils.checkpoint import load_state

    if not (run_dir / "last.pt").is_file() or not (run_dir / "last.safetensors").is_file():
        return False
    state = load_state(run_dir / "last.pt")
    return int(state["epoch"]) >= epochs and int(state["iter_in_epoch"]) == 0
