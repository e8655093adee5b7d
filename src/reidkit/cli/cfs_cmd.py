"""``reidkit cfs score | select | run``: Catastrophic Forgetting Score data selection."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from reidkit.cli.common import console, user_errors

cfs_app = typer.Typer(help="Rank an unlabelled pool by relevance to a ReID target (CFS) and select a subset.",
                      no_args_is_help=True)


@cfs_app.command("score")
def score_command(
    source: Path = typer.Option(..., "--source", help="Source proxy model file (short DINO run on the pool)."),
    target: Path = typer.Option(..., "--target", help="Target proxy model file (the source fine-tuned on the "
                                                      "labelled target)."),
    images: Path = typer.Option(..., "--images", help="Image folder (recursive) or an ordered list file."),
    out: Path = typer.Option(Path("scores.tsv"), "--out", "-o", help="Scores file: path<TAB>score, best first."),
    root: Optional[Path] = typer.Option(None, "--root", help="Image root for a list file (default: its folder)."),
    batch_size: int = typer.Option(128, "--batch-size"),
    workers: int = typer.Option(2, "--workers"),
    shard_size: int = typer.Option(8192, "--shard-size", help="Images per resumable shard."),
    device: str = typer.Option("auto", "--device"),
    precision: str = typer.Option("fp32", "--precision", help="fp32, bf16 or fp16 (autocast)."),
) -> None:
    """Score every image: cosine of the two proxies' pre-BN features (test transform). Resumable;
    runs across processes with `torchrun -m reidkit.cli.main cfs score ...`."""
    with user_errors():
        import os

        import torch.distributed as dist

        from reidkit.methods.cfs import read_scores, score

        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
            import torch

            dist.init_process_group("nccl" if torch.cuda.is_available() and device != "cpu" else "gloo")
        path = score(source, target, images, out, root=str(root) if root else None, batch_size=batch_size,
                     num_workers=workers, device=device, shard_size=shard_size, precision=precision)
        if not dist.is_initialized() or dist.get_rank() == 0:
            names, values = read_scores(path)
            console.print(f"scored {len(names)} images -> [bold]{path}[/]  (score: max {values.max():.4f}, "
                          f"median {float(sorted(values)[len(values) // 2]):.4f}, min {values.min():.4f})")


@cfs_app.command("select")
def select_command(
    scores: Path = typer.Option(..., "--scores", help="Scores file from `reidkit cfs score`."),
    out: Path = typer.Option(..., "--out", "-o", help="Ordered subset list for `pretrain data.list_file=...`."),
    keep_ratio: Optional[float] = typer.Option(None, "--keep-ratio", help="Fraction to keep, e.g. 0.5."),
    keep_num: Optional[int] = typer.Option(None, "--keep-num", help="Number to keep, e.g. 2508146."),
    random: bool = typer.Option(False, "--random", help="A random subset of the same size (ablation)."),
    seed: int = typer.Option(0, "--seed", help="Seed of --random."),
) -> None:
    """Write the head of the CFS ranking (or a random subset of the same size) as a list file."""
    with user_errors():
        from reidkit.methods.cfs import select

        kept = select(scores, out, keep_ratio=keep_ratio, keep_num=keep_num, random=random, seed=seed)
        console.print(f"kept {len(kept)} images ({'random' if random else 'CFS top'}) -> [bold]{out}[/]")


@cfs_app.command("run")
def run_command(
    config: Path = typer.Argument(..., help="CFS workflow YAML, e.g. configs/pretrain/cfs_synth_tiny.yaml."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. pool=data/LUP/images"),
) -> None:
    """The whole workflow: short DINO on the pool (source proxy) -> fine-tune on the target (target
    proxy) -> scores -> subset lists. Finished steps are reused on a rerun."""
    with user_errors():
        from reidkit.config import load_config
        from reidkit.workflows.cfs import CFSConfig, run

        cfg = load_config(CFSConfig, config, list(overrides or []))
        out = run(cfg, config_dir=config.parent)
        console.print(f"CFS run folder: [bold]{out}[/] (scores.tsv, cfs_list.txt, random_list.txt, source/, target/)")


def register(app: typer.Typer) -> None:
    app.add_typer(cfs_app, name="cfs")
