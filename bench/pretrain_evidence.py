"""Evidence for the pre-training methods on the synthetic benchmark (CPU-sized): which start helps
fine-tuning on a city most, at the same pre-training compute and the same fine-tune recipe.

Two cities (``city_a`` the target, ``city_b`` a labelled source in another style) and an unlabelled
pool. Rows, each fine-tuned on city_a train with ``--ft-seeds`` seeds and evaluated on city_a test:

  * scratch (no pre-training);
  * DINO on the pool;  * CoKe on the pool;
  * supervised cross-entropy on labelled city_b (``method: look, objective: ce``);
  * LOOK on labelled city_b.

Equal compute: every pre-training gets the same budget of *view-equivalents*, images x views
passed through the trained network per epoch, a 0.5x-size local crop counted 1/4 and a
forward-only teacher view 1/3 (DINO with 2 global + 2 local crops: 2 + 0.5 + 0.67 = 3.17 per image;
CoKe, CE and LOOK: 1 view per image). The epochs of each method follow from the DINO budget; the
measured seconds of each pre-training are printed too (a loaded machine: a guide, not the budget).

Claims checked: (a) CoKe >= scratch; (b) CoKe comparable to DINO (within 2 mAP) at equal compute;
(c) LOOK >= CE pre-training for transfer to the new city. Every step is skipped when its output
exists, so a killed run continues. ``--quick`` is a smoke run of every step.

    uv run python bench/pretrain_evidence.py --out runs/pretrain_evidence [--quick] [--ft-seeds 3]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from cfs_evidence import MODEL, step_dino, step_finetune, step_synth  # noqa: E402  (the same recipes)

console = Console()
DINO_VIEWS = 2 + 2 * 0.25 + 2 / 3   # view-equivalents per image of a DINO step (2 global + 2 local, teacher)


def method_overrides(args, out: Path, root: Path, epochs: int) -> list[str]:
    """What CoKe / LOOK / CE share with the DINO recipe of cfs_evidence: model, size, batch, lr, warm-up."""
    return [f"output={out}", f"data.root={root}", "model.preset=vit_tiny", *MODEL,
            "crops.global_size=[64,32]", "head.hidden_dim=256", "head.out_dim=64", f"solver.epochs={epochs}",
            "solver.warmup_epochs=1", f"seed={args.seed}", f"data.num_workers={args.workers}", "data.batch_size=32",
            "log_every=10"]


def step_method(method: str, out: Path, overrides: list[str]) -> Path:
    from reidkit.config import load_config

    if method == "coke":
        from reidkit.methods.pretrain_coke import CoKeConfig as cls, pretrain_coke as run
        recipe = "coke_synth_tiny.yaml"
    else:
        from reidkit.methods.pretrain_look import LOOKConfig as cls, pretrain_look as run
        recipe = "look_synth_tiny.yaml"
    model = out / "last.safetensors"
    if (out / "done").is_file():
        return model
    cfg = load_config(cls, REPO / "configs" / "pretrain" / recipe, overrides)
    t0 = time.perf_counter()
    run(cfg, resume=(out / "last.pt").is_file())
    (out / "done").write_text(json.dumps({"seconds": time.perf_counter() - t0}))
    return model


def seconds(run: Path) -> float:
    return float(json.loads((run / "done").read_text())["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description="DINO / CoKe / CE / LOOK pre-training evidence on the synthetic benchmark")
    ap.add_argument("--out", default="runs/pretrain_evidence")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 epoch each: a smoke run of every step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ids", type=int, default=60, help="identities per city in train and in test")
    ap.add_argument("--pool-size", type=int, default=800)
    ap.add_argument("--dino-epochs", type=int, default=4, help="sets the compute budget of every method")
    ap.add_argument("--ft-epochs", type=int, default=10)
    ap.add_argument("--ft-seeds", type=int, default=3)
    ap.add_argument("--coke-k", default="[32,64]", help="CoKe clusterings on the pool")
    ap.add_argument("--look-k", type=int, default=20)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.quick:
        args.ids, args.pool_size, args.dino_epochs, args.ft_epochs, args.ft_seeds = 16, 192, 1, 1, 2
        args.coke_k, args.look_k = "[8,16]", 5
    if args.threads:
        torch.set_num_threads(args.threads)

    from reidkit.data.datasets import load_dataset

    out = Path(args.out)
    t_start = time.perf_counter()
    console.rule("1. synthetic benchmark: city_a (target), city_b (labelled source), pool")
    synth = step_synth(args, out / "synth", domains=2)
    pool, city_a, city_b = synth / "pool", synth / "city_a", synth / "city_b"
    n_pool = sum(1 for p in pool.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    n_b = len(load_dataset("market1501", city_b).train)
    budget = n_pool * args.dino_epochs * DINO_VIEWS
    epochs = {"coke": max(1, round(budget / n_pool)), "b": max(1, round(budget / n_b))}
    console.print(f"budget {budget:.0f} view-equivalents: DINO {args.dino_epochs} epochs x {n_pool} images x "
                  f"{DINO_VIEWS:.2f}; CoKe {epochs['coke']} epochs x {n_pool}; CE / LOOK {epochs['b']} epochs x {n_b}")

    console.rule("2. pre-training")
    runs = {"dino": out / "dino", "coke": out / "coke", "ce": out / "ce", "look": out / "look"}
    weights = {"scratch": None, "dino": step_dino(args, runs["dino"], pool)}
    weights["coke"] = step_method("coke", runs["coke"], method_overrides(args, runs["coke"], pool, epochs["coke"])
                                  + [f"coke.num_clusters={args.coke_k}"])
    for name in ("ce", "look"):
        weights[name] = step_method("look", runs[name], method_overrides(args, runs[name], city_b, epochs["b"])
                                    + [f"objective={name}", f"look.k={args.look_k}"])

    console.rule("3. fine-tune every start on city_a (same recipe, same seeds)")
    res = {name: step_finetune(args, out / f"ft_{name}", city_a, w) for name, w in weights.items()}

    table = Table(title=f"city_a test after fine-tuning on city_a (last epoch; mean ± std of {args.ft_seeds} "
                        "fine-tune seeds)")
    for col in ("initialisation", "pre-training data", "epochs", "pre-train s", "mAP", "R1"):
        table.add_column(col, justify="left" if col in ("initialisation", "pre-training data") else "right")
    rows = [("scratch", "scratch (no pre-training)", "-", "-"),
            ("dino", "DINO", f"pool ({n_pool}, unlabelled)", str(args.dino_epochs)),
            ("coke", "CoKe", f"pool ({n_pool}, unlabelled)", str(epochs["coke"])),
            ("ce", "cross-entropy", f"city_b ({n_b}, labelled)", str(epochs["b"])),
            ("look", "LOOK", f"city_b ({n_b}, labelled)", str(epochs["b"]))]
    for key, label, data, ep in rows:
        m = res[key]
        secs = "-" if key == "scratch" else f"{seconds(runs[key]):.0f}"
        table.add_row(label, data, ep, secs, f"{m['mAP']:.1f} ± {m['mAP_std']:.1f}", f"{m['R1']:.1f}")
    console.print(table)

    checks = Table(title="claims")
    for col in ("claim", "measured", "holds"):
        checks.add_column(col, justify="left" if col == "claim" else "right")
    noise = max(res[k]["mAP_std"] for k in res)

    def verdict(gap: float, tolerance: float | None = None) -> str:
        """A ">=" claim holds when the gap exceeds the fine-tune noise (largest std), is a tie within it;
        a "within t" claim holds when gap >= -t."""
        if tolerance is not None:
            return "yes" if gap >= -tolerance else "no"
        return "yes" if gap > noise else "within noise" if gap >= -noise else "no"

    a = res["coke"]["mAP"] - res["scratch"]["mAP"]
    b = res["coke"]["mAP"] - res["dino"]["mAP"]
    c = res["look"]["mAP"] - res["ce"]["mAP"]
    checks.add_row("(a) CoKe >= scratch", f"{a:+.1f} mAP", verdict(a))
    checks.add_row("(b) CoKe comparable to DINO (within 2 mAP) at equal compute", f"{b:+.1f} mAP",
                   verdict(b, tolerance=2.0))
    checks.add_row("(c) LOOK >= cross-entropy pre-training for a new city", f"{c:+.1f} mAP", verdict(c))
    console.print(checks)
    minutes = (time.perf_counter() - t_start) / 60
    console.print(f"largest fine-tune std {noise:.1f} mAP; total {minutes:.1f} min "
                  f"({torch.get_num_threads()} torch threads); outputs in {out}")
    (out / "evidence.json").write_text(json.dumps({"results": res, "epochs": epochs, "budget": budget,
                                                   "seconds": {k: seconds(r) for k, r in runs.items()},
                                                   "minutes": minutes, "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
