"""Evidence for clustering-based USL / UDA (``reidkit adapt``) on the synthetic benchmark (CPU-sized).

Two cities (``city_a`` labelled source, ``city_b`` unlabelled target) and an unlabelled pool. Steps:

  1. DINO on the pool                                     -> ``dino``
  2. USL on city_b from scratch and from ``dino``          -> ``usl_scratch``, ``usl_dino``
  3. supervised source models on city_a, ICS and patchify stems -> ``src_ics``, ``src_patchify``
  4. UDA city_a -> city_b from each source model           -> ``uda_ics``, ``uda_patchify``
  5. table: city_b test mAP / R1 (last epoch, no model selection) of every run, the source models
     before adaptation, and the last epoch's pseudo-label quality (ARI, pairwise precision / recall).

Claims checked: (a) USL from DINO beats USL from scratch; (b) UDA improves the source model on city_b;
(c) ICS vs patchify stem in UDA (reported, the paper's claim is ICS >= patchify). Every step is skipped
when its output exists, so a killed run continues. A small ViT (128 wide, 4 deep, patch 8) at 64x32
keeps it around 15 minutes on 2 idle cores; ``--quick`` is a smoke run of every step.

    uv run python bench/adapt_evidence.py --out runs/adapt_evidence [--quick] [--threads 2]
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
console = Console(width=150)

MODEL = ["model.embed_dim=128", "model.depth=4", "model.num_heads=4", "model.patch_size=8"]


def _model(stem: str) -> list[str]:
    return [*MODEL, f"model.stem={stem}"]


def step_synth(args, root: Path) -> Path:
    from reidkit.data.synth import SynthConfig, generate

    if not (root / "synth.json").is_file():
        generate(SynthConfig(seed=args.seed, domains=2, train_ids=args.ids, test_ids=args.ids, cameras=4,
                             distractors=args.ids // 2, junk=args.ids // 5, pool_size=args.pool_size,
                             pool_relevant_ratio=1.0, workers=args.workers), root, overwrite=True)
    return root


def step_dino(args, out: Path, pool: Path) -> Path:
    from reidkit.config import load_config
    from reidkit.methods.pretrain_dino import PretrainConfig, pretrain

    if not (out / "done").is_file():
        ov = [f"output={out}", f"data.root={pool}", "model.preset=vit_tiny", *MODEL,
              "crops.global_size=[64,32]", "crops.local_size=[32,16]", "crops.local_crops_number=2",
              "head.out_dim=1024", "head.hidden_dim=256", "head.bottleneck_dim=64",
              f"solver.epochs={args.dino_epochs}", "solver.warmup_epochs=1", f"seed={args.seed}",
              f"data.num_workers={args.workers}", "data.batch_size=32", "log_every=10"]
        cfg = load_config(PretrainConfig, REPO / "configs" / "pretrain" / "synth_tiny.yaml", ov)
        pretrain(cfg, resume=(out / "last.pt").is_file())
        (out / "done").write_text("ok")
    return out / "last.safetensors"


def step_source(args, out: Path, city: Path, stem: str) -> Path:
    from reidkit.config import load_config
    from reidkit.methods.finetune import FinetuneConfig, train

    if not (out / "summary.json").is_file():
        ov = [f"output={out}", f"data.root={city}", "data.format=market1501", "data.size=[64,32]", "data.pad=4",
              "data.batch_size=32", "data.num_instances=4", f"data.num_workers={args.workers}",
              "model.preset=vit_tiny", *_model(stem), "model.drop_path_rate=0.1",
              "model.weights=null", "solver.optimizer=adamw", "solver.lr=1e-3", "solver.weight_decay=0.05",
              "solver.weight_decay_bias=0.0", "solver.bias_lr_factor=1.0", f"solver.epochs={args.src_epochs}",
              "solver.warmup_epochs=1", "eval.every=0", "precision=fp32", f"seed={args.seed}"]
        cfg = load_config(FinetuneConfig, REPO / "configs" / "finetune" / "market_vit_small.yaml", ov)
        train(cfg, resume=(out / "last.pt").is_file())
    return out / "last.safetensors"


def step_adapt(args, out: Path, city: Path, stem: str, *, weights: Path | None = None,
               source: Path | None = None) -> dict:
    from reidkit.config import load_config
    from reidkit.methods.adapt import AdaptConfig, adapt

    if not (out / "summary.json").is_file():
        ov = [f"output={out}", f"data.root={city}", "data.size=[64,32]", "data.batch_size=32",
              "data.num_instances=4", f"data.num_workers={args.workers}", "model.preset=vit_tiny",
              *_model(stem), "model.drop_path_rate=0.1",
              f"model.weights={weights if weights else 'null'}", f"cluster.eps={args.eps}", f"cluster.k1={args.k1}",
              "cluster.k2=4",
              f"solver.epochs={args.epochs}", f"solver.iters={args.iters}", f"solver.lr={args.lr}",
              f"solver.step_size={max(1, args.epochs * 2 // 3)}", f"eval.every={args.epochs}",
              f"seed={args.seed}"]
        if source is not None:
            ov += ["mode=uda", f"source.model={source}"]
        cfg = load_config(AdaptConfig, REPO / "configs" / "adapt" / "synth_tiny_usl.yaml", ov)
        adapt(cfg, resume=(out / "last.pt").is_file())
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "log.csv") as f:
        last = list(csv.DictReader(f))[-1]
    return {"initial": summary.get("initial", {}), "final": summary["final"], "last": last}


def main() -> None:
    ap = argparse.ArgumentParser(description="USL / UDA evidence on the synthetic benchmark")
    ap.add_argument("--out", default="runs/adapt_evidence")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1-2 epochs: a smoke run of every step")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ids", type=int, default=60, help="identities per city in train and in test")
    ap.add_argument("--pool-size", type=int, default=1200)
    ap.add_argument("--dino-epochs", type=int, default=8)
    ap.add_argument("--src-epochs", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=8, help="adaptation epochs (re-clusterings)")
    ap.add_argument("--iters", type=int, default=20, help="iterations per adaptation epoch")
    ap.add_argument("--lr", type=float, default=3.5e-3)
    ap.add_argument("--eps", type=float, default=0.55)
    ap.add_argument("--k1", type=int, default=10, help="k-reciprocal k1 (synthetic ids have ~5-10 images)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.quick:
        args.ids, args.pool_size, args.dino_epochs, args.src_epochs, args.epochs, args.iters = 16, 128, 1, 2, 2, 4
    if args.threads:
        torch.set_num_threads(args.threads)

    out = Path(args.out)
    t0 = time.perf_counter()
    console.rule("1. synthetic benchmark (city_a source, city_b target, pool)")
    synth = step_synth(args, out / "synth")
    city_a, city_b = synth / "city_a", synth / "city_b"
    console.rule("2. DINO on the pool")
    dino = step_dino(args, out / "dino", synth / "pool")
    console.rule("3. USL on city_b: scratch vs DINO")
    res = {"usl_scratch": step_adapt(args, out / "usl_scratch", city_b, "patchify"),
           "usl_dino": step_adapt(args, out / "usl_dino", city_b, "patchify", weights=dino)}
    console.rule("4. source models on city_a, then UDA to city_b (ICS vs patchify stem)")
    for stem in ("ics", "patchify"):
        src = step_source(args, out / f"src_{stem}", city_a, stem)
        res[f"uda_{stem}"] = step_adapt(args, out / f"uda_{stem}", city_b, stem, source=src)

    table = Table(title=f"USL / UDA on the synthetic benchmark (city_b test, last epoch; seed {args.seed})")
    for col in ("run", "start", "mAP before", "R1 before", "mAP after", "R1 after", "clusters / ids",
                "PL ARI", "PL precision", "PL recall"):
        table.add_column(col, justify="left" if col in ("run", "start") else "right")
    labels = {"usl_scratch": ("USL, patchify", "random init"), "usl_dino": ("USL, patchify", "DINO (pool)"),
              "uda_ics": ("UDA a->b, ICS stem", "source model (city_a)"),
              "uda_patchify": ("UDA a->b, patchify stem", "source model (city_a)")}
    for key, (run, start) in labels.items():
        r = res[key]
        i, f, last = r["initial"], r["final"], r["last"]
        fmt = lambda d, k: f"{float(d[k]):.1f}" if k in d else "-"  # noqa: E731
        table.add_row(run, start, fmt(i, "mAP"), fmt(i, "R1"), fmt(f, "mAP"), fmt(f, "R1"),
                      f"{int(float(last['clusters']))} / {int(float(last.get('pl_true_ids', 0)))}",
                      f"{float(last.get('pl_ari', 'nan')):.3f}", f"{float(last.get('pl_pair_precision', 'nan')):.3f}",
                      f"{float(last.get('pl_pair_recall', 'nan')):.3f}")
    console.print(table)
    checks = Table(title="claims")
    for col in ("claim", "measured", "holds"):
        checks.add_column(col)
    a = res["usl_dino"]["final"]["mAP"] - res["usl_scratch"]["final"]["mAP"]
    b = res["uda_ics"]["final"]["mAP"] - res["uda_ics"]["initial"].get("mAP", float("nan"))
    b2 = res["uda_patchify"]["final"]["mAP"] - res["uda_patchify"]["initial"].get("mAP", float("nan"))
    c = res["uda_ics"]["final"]["mAP"] - res["uda_patchify"]["final"]["mAP"]
    checks.add_row("(a) USL from DINO beats USL from scratch", f"{a:+.1f} mAP", "yes" if a > 0 else "no")
    checks.add_row("(b) UDA improves the ICS source model on city_b", f"{b:+.1f} mAP", "yes" if b > 0 else "no")
    checks.add_row("(b) UDA improves the patchify source model on city_b", f"{b2:+.1f} mAP", "yes" if b2 > 0 else "no")
    checks.add_row("(c) ICS stem >= patchify stem after UDA", f"{c:+.1f} mAP", "yes" if c >= 0 else "no")
    console.print(checks)
    minutes = (time.perf_counter() - t0) / 60
    console.print(f"total {minutes:.1f} min ({torch.get_num_threads()} torch threads); outputs in {out}")
    (out / "evidence.json").write_text(json.dumps({"results": res, "minutes": minutes, "args": vars(args)},
                                                  indent=1, default=str))


if __name__ == "__main__":
    main()
