"""The README's main job: synthetic data -> (DINO) -> fine-tune -> evaluate -> report.

    from reidkit.workflows.demo import DemoConfig, run_demo
    result = run_demo(DemoConfig(out="runs/demo"))        # ~10 minutes on 2 CPU cores
    result.rows                                           # mAP / R1 / R5 / R10 / mINP per model

Steps, each skipped when its output is already complete (so a killed demo re-run continues):
  1. generate the synthetic benchmark (one city; two with ``adapt``; plus the pool with ``ssl``);
  2. colour-histogram baseline on query / gallery;
  3. (``ssl``) DINO pre-training on the pool, ``reidkit.methods.pretrain_dino``;
  4. fine-tune a small ViT with the ICS stem, ``reidkit.methods.finetune`` (recipe
     ``configs/finetune/synth_tiny_ics.yaml`` when present, else the built-in one below);
  5. (``adapt``) unsupervised domain adaptation city_a -> city_b, ``reidkit.methods.adapt``;
  6. evaluate every model (and the last fine-tuned one re-ranked: k-reciprocal, GCR), print the
     table, write the report folder (HTML, CMC, ranked lists, training curves).
A stage whose module is not part of this build is reported as missing, never faked. A run folder is
never deleted: when the recipe changed since the run in it, the old run is moved aside to
``<name>.prev-<time>/``. Progress goes to the ``say`` callback (the CLI prints it; the library never
imports the CLI).
"""
from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from reidkit.data.synth import SynthConfig

REPO_ROOT = Path(__file__).resolve().parents[3]
TRAIN_RECIPE = REPO_ROOT / "configs" / "finetune" / "synth_tiny_ics.yaml"
PRETRAIN_RECIPE = REPO_ROOT / "configs" / "pretrain" / "synth_tiny.yaml"

# --ssl: DINO on a 1,500-image pool for 4 epochs (~3 min on 2 cores at ~35 pool images/s), so that the
# whole --ssl demo stays near 10 minutes; configs/pretrain/synth_tiny.yaml runs 10 epochs for users.
SSL_POOL = 1500
SSL_EPOCHS = 4

# Used only when configs/finetune/synth_tiny_ics.yaml is absent (e.g. an installed wheel):
# vit_tiny (192 wide, 6 deep) with the ICS stem at 128x64, from scratch, AdamW, ~3-4 min on 2 cores.
BUILTIN_TRAIN_RECIPE = [
    "model.preset=vit_tiny_ics", "model.drop_path_rate=0.1", "data.size=[128,64]", "data.pad=6",
    "data.batch_size=64", "data.num_instances=4", "solver.optimizer=adamw", "solver.lr=1e-3",
    "solver.weight_decay=0.05", "solver.weight_decay_bias=0.0", "solver.bias_lr_factor=1.0",
    "solver.epochs=20", "solver.warmup_epochs=2", "eval.every=5",
]


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    seed: int = 0
    fast: bool = False              # tiny data and a few epochs: a smoke run of every step (~1 min)
    ssl: bool = False               # DINO pre-training on the synthetic pool before fine-tuning
    adapt: bool = False             # unsupervised domain adaptation to a second city
    train_recipe: str | None = None  # FinetuneConfig YAML (default: configs/finetune/synth_tiny_ics.yaml)
    train_overrides: list[str] = field(default_factory=list)
    epochs: int | None = None       # override the recipe's epochs
    workers: int = 2                # synth rendering and data-loading processes
    ranked_queries: int = 8


@dataclass
class DemoResult:
    out: Path
    rows: list[dict]                # one per model: name, mAP, R1, R5, R10, mINP (percent)
    report: Path
    notes: list[str]
    seconds: dict[str, float]


def synth_config(cfg: DemoConfig) -> SynthConfig:
    """The benchmark the demo trains on (sized for the 10-minute CPU budget)."""
    domains = 2 if cfg.adapt else 1
    if cfg.fast:
        return SynthConfig(seed=cfg.seed, domains=domains, train_ids=24, test_ids=24, cameras=4,
                           distractors=12, junk=6, pool_size=200 if cfg.ssl else 0, workers=cfg.workers)
    return SynthConfig(seed=cfg.seed, domains=domains, pool_size=SSL_POOL if cfg.ssl else 0, workers=cfg.workers)


Say = Callable[[Any], None]


def _module_available(name: str, attr: str) -> bool:
    try:
        if importlib.util.find_spec(name) is None:
            return False
        return hasattr(importlib.import_module(name), attr)
    except ImportError:
        return False


# ---------------------------------------------------------------------------------------------
# steps


def step_synth(cfg: DemoConfig, data_dir: Path, say: Say = print, show_synth: Callable | None = None):
    """Generate the benchmark, or reuse it when ``synth.json`` records the same config."""
    from reidkit.data.synth import META_JSON, SynthResult, domain_names, generate

    scfg = synth_config(cfg)
    meta = data_dir / META_JSON
    wanted = {k: v for k, v in asdict(scfg).items() if k != "workers"}
    if meta.is_file() and json.loads(meta.read_text()).get("config") == wanted:
        stats = json.loads(meta.read_text())["stats"]
        say(f"[1/5] synthetic benchmark: reusing {data_dir}")
        return SynthResult(data_dir, [data_dir / n for n in domain_names(scfg)],
                           data_dir / "pool" if scfg.pool_size else None, None, stats)
    say(f"[1/5] synthetic benchmark -> {data_dir}")
    result = generate(scfg, data_dir, overwrite=True)
    if show_synth is not None:
        show_synth(result)
    return result


def evaluate_features(name: str, query, gallery, metric: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """Table row, CMC (rank-1 first) and (N_q, N_g) distances of one model's features."""
    from reidkit.evaluation.distances import compute_distance
    from reidkit.evaluation.metrics import evaluate
    from reidkit.report.run_report import metrics_row

    dist = compute_distance(query.features, gallery.features, metric).numpy()
    m = evaluate(dist, query=query, gallery=gallery)
    return metrics_row(name, m), np.asarray(m["cmc"]), dist


def step_baseline(dataset, say: Say = print):
    from reidkit.evaluation.baselines import color_histogram_features

    say("[2/5] colour-histogram baseline")
    q = color_histogram_features(dataset.query)
    g = color_histogram_features(dataset.gallery)
    return q, g


def finetune_config(cfg: DemoConfig, root: Path, out: Path, weights: str | None = None):
    from reidkit.config import load_config
    from reidkit.methods.finetune import FinetuneConfig

    recipe = Path(cfg.train_recipe) if cfg.train_recipe else (TRAIN_RECIPE if TRAIN_RECIPE.is_file() else None)
    overrides = [] if recipe is not None else list(BUILTIN_TRAIN_RECIPE)
    overrides += [f"data.root={root}", "data.format=market1501", f"output={out}", f"seed={cfg.seed}",
                  f"data.num_workers={cfg.workers if cfg.workers > 1 else 0}"]
    if cfg.fast:
        overrides += ["solver.epochs=2", "solver.warmup_epochs=1", "eval.every=0", "data.batch_size=32"]
    if cfg.epochs is not None:
        overrides.append(f"solver.epochs={cfg.epochs}")
    if weights is not None:
        overrides.append(f"model.weights={weights}")
    overrides += cfg.train_overrides
    return load_config(FinetuneConfig, recipe, overrides), recipe


def move_aside(out: Path) -> Path:
    """Rename a run folder to ``<name>.prev-<UTC time>`` (never delete a user's checkpoints)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    dest = out.with_name(f"{out.name}.prev-{stamp}")
    n = 1
    while dest.exists():
        dest, n = out.with_name(f"{out.name}.prev-{stamp}-{n}"), n + 1
    out.rename(dest)
    return dest


def recipe_changes(saved: Path, cfg: Any) -> list[tuple[str, Any, Any]]:
    """How ``cfg`` differs from a run's ``config.yaml`` (paths compared resolved); [] when the same."""
    import yaml

    from reidkit.config import flatten, recipe_diff, to_dict

    return recipe_diff(flatten(yaml.safe_load(saved.read_text()) or {}), flatten(to_dict(cfg)))


def step_train(cfg: DemoConfig, root: Path, out: Path, weights: str | None = None, say: Say = print) -> Path:
    """Fine-tune (or continue a killed run, or reuse a finished one); returns the run folder. A run
    with another recipe is moved aside to ``<out>.prev-<time>/``, never deleted."""
    from reidkit.methods.finetune import train

    tcfg, recipe = finetune_config(cfg, root, out, weights)
    saved = out / "config.yaml"
    if saved.is_file():
        changes = recipe_changes(saved, tcfg)
        if not changes and (out / "summary.json").is_file():
            say(f"    reusing the finished run {out}")
            return out
        if changes:
            moved = move_aside(out)
            what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changes[:4]) + (" ..." if len(changes) > 4 else "")
            say(f"    the recipe changed since the run in {out} ({what}); the old run is kept in {moved}")
    say(f"    recipe: {recipe or 'built-in (reidkit.demo.BUILTIN_TRAIN_RECIPE)'}; "
         f"{tcfg.model.preset}, {tcfg.solver.epochs} epochs -> {out}")
    return train(tcfg, resume=(out / "last.pt").is_file())


def step_pretrain(cfg: DemoConfig, pool: Path, out: Path, say: Say = print) -> Path | None:
    """DINO on the pool; returns the backbone file for fine-tuning, or None when unavailable."""
    if not _module_available("reidkit.methods.pretrain_dino", "pretrain"):
        return None
    from reidkit.config import load_config
    from reidkit.methods.pretrain_dino import PretrainConfig, pretrain

    model_file = out / "last.safetensors"
    if (out / "done").is_file() and model_file.is_file():
        say(f"    reusing the finished pre-training {out}")
        return model_file
    overrides = [f"data.root={pool}", f"output={out}", f"seed={cfg.seed}", "model.preset=vit_tiny_ics"]
    overrides += ["solver.epochs=1", "solver.warmup_epochs=0"] if cfg.fast else [f"solver.epochs={SSL_EPOCHS}"]
    pcfg = load_config(PretrainConfig, PRETRAIN_RECIPE if PRETRAIN_RECIPE.is_file() else None, overrides)
    if (out / "config.yaml").is_file() and recipe_changes(out / "config.yaml", pcfg):
        say(f"    the pre-training recipe changed since the run in {out}; the old run is kept in {move_aside(out)}")
    run = Path(pretrain(pcfg, resume=(out / "last.pt").is_file()))
    (out / "done").write_text("ok\n")
    return run / "last.safetensors"


def model_features(run_dir: Path, dataset, cfg: DemoConfig):
    """Query and gallery features of the best model of a fine-tuning run."""
    from reidkit.data.transforms import build_test_transform
    from reidkit.evaluation.extract import extract_features
    from reidkit.models import load_model

    path = run_dir / "best.safetensors"
    if not path.is_file():
        path = run_dir / "last.safetensors"
    model = load_model(path)
    size = tuple(model.config.get("img_size", (128, 64)))
    tf = build_test_transform(size, "bilinear")
    kw = dict(transform=tf, batch_size=128, num_workers=0)
    q = extract_features(model, dataset.query, description="extract query", **kw)
    g = extract_features(model, dataset.gallery, description="extract gallery", **kw)
    return q, g


def step_rerank(name: str, query, gallery, say: Say = print) -> list[dict]:
    """Rows for the fine-tuned model's features re-ranked through ``reidkit.evaluation.rerank.apply_rerank``:
    k-reciprocal (Zhong et al., k1=20, k2=6, lambda=0.3 on L2-normalised features) and GCR (official
    Market config, cameras used)."""
    from reidkit.evaluation.distances import compute_distance
    from reidkit.evaluation.metrics import evaluate
    from reidkit.evaluation.rerank import apply_rerank
    from reidkit.report.run_report import metrics_row

    say("    re-ranking the fine-tuned model's distances (k-reciprocal, GCR)")
    rows = []
    dist, _, _ = apply_rerank("kreciprocal", query, gallery, metric="cosine", k1=20, k2=6, lambda_value=0.3)
    rows.append(metrics_row(f"{name} + k-reciprocal", evaluate(dist, query=query, gallery=gallery)))
    _, q2, g2 = apply_rerank("gcr", query, gallery, cfg="market")
    dist = compute_distance(q2.features, g2.features, "cosine").numpy()
    rows.append(metrics_row(f"{name} + GCR", evaluate(dist, query=query, gallery=gallery)))
    return rows


# ---------------------------------------------------------------------------------------------
# the whole job


def run_demo(cfg: DemoConfig, say: Say = print, show_synth: Callable | None = None) -> DemoResult:
    """Run (or continue) the demo; ``say`` gets the progress lines, ``show_synth`` the generated benchmark."""
    from reidkit.data.datasets import load_dataset

    t_start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    report_dir = out / "report"
    seconds: dict[str, float] = {}
    notes: list[str] = []

    t = time.perf_counter()
    synth = step_synth(cfg, out / "data", say, show_synth)
    seconds["synth"] = time.perf_counter() - t
    source = load_dataset("market1501", synth.domains[0])

    t = time.perf_counter()
    bq, bg = step_baseline(source, say)
    row, cmc, _ = evaluate_features("colour histogram (no training)", bq, bg, "euclidean")
    rows, curves = [row], {"colour histogram": cmc}
    seconds["baseline"] = time.perf_counter() - t
    ranked_from = (bq, bg, _, row["model"])
    logs: list[tuple[str, Path]] = []

    weights = None
    if cfg.ssl:
        say("[3/5] DINO pre-training on the synthetic pool")
        t = time.perf_counter()
        if synth.pool is None:
            notes.append("--ssl: no pre-training pool was generated")
        else:
            weights = step_pretrain(cfg, synth.pool, out / "pretrain", say)
            if weights is None:
                notes.append("--ssl: DINO pre-training (reidkit.methods.pretrain_dino) is not part of this build; "
                             "skipped")
            elif (out / "pretrain" / "log.csv").is_file():
                logs.append(("DINO pre-training", out / "pretrain" / "log.csv"))
        seconds["pretrain"] = time.perf_counter() - t
    else:
        say("[3/5] DINO pre-training: skipped (add --ssl)")

    trained = _module_available("reidkit.methods.finetune", "train")
    if trained:
        say("[4/5] fine-tuning a small ViT with the ICS stem on " + synth.domains[0].name)
        t = time.perf_counter()
        runs = [("ViT-tiny ICS, from scratch", out / "train", None)]
        if weights is not None:
            runs.append(("ViT-tiny ICS, DINO pre-trained", out / "train_dino", str(weights)))
        for name, run_out, w in runs:
            run_dir = step_train(cfg, synth.domains[0], run_out, w, say)
            q, g = model_features(run_dir, source, cfg)
            row, cmc, dist = evaluate_features(name, q, g, "cosine")
            rows.append(row)
            curves[name] = cmc
            ranked_from = (q, g, dist, name)
            logs.append((name, run_dir / "log.csv"))
        seconds["train"] = time.perf_counter() - t
        t = time.perf_counter()
        rows += step_rerank(ranked_from[3], q, g, say)
        seconds["rerank"] = time.perf_counter() - t
    else:
        notes.append("fine-tuning (reidkit.methods.finetune) is not part of this build: baseline only")
        say("[4/5] fine-tuning: not available in this build, baseline only")

    if cfg.adapt:
        if len(synth.domains) < 2 or not trained:
            notes.append("--adapt needs a second city and a fine-tuned source model")
        elif not _module_available("reidkit.methods.adapt", "adapt"):
            notes.append("--adapt: domain adaptation (reidkit.methods.adapt) is not part of this build; skipped")
        else:
            say("[4/5] domain adaptation")
            t = time.perf_counter()
            notes.append(_adapt_hook(cfg, synth, out, rows, logs, say))
            seconds["adapt"] = time.perf_counter() - t

    say("[5/5] evaluation and report")
    t = time.perf_counter()
    report = write_report(report_dir, rows, curves, ranked_from, logs, notes, cfg, synth)
    seconds["report"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t_start
    return DemoResult(out, rows, report, notes, seconds)


def _adapt_hook(cfg: DemoConfig, synth, out: Path, rows: list[dict], logs: list, say: Say = print) -> str:
    """UDA city_a -> city_b with ``reidkit.methods.adapt`` (its recipe ``configs/adapt/synth_tiny_uda.yaml``),
    starting from the model the demo fine-tuned on city_a. Adds rows evaluated on city_b."""
    from reidkit.config import load_config
    from reidkit.data.datasets import load_dataset
    from reidkit.methods.adapt import AdaptConfig, adapt

    source, target = synth.domains[0], synth.domains[1]
    run_out = out / "adapt"
    if not (run_out / "summary.json").is_file():
        recipe = REPO_ROOT / "configs" / "adapt" / "synth_tiny_uda.yaml"
        overrides = [f"data.root={target}", f"source.model={out / 'train'}", f"output={run_out}",
                     f"seed={cfg.seed}"]
        if cfg.fast:
            overrides += ["solver.epochs=1", "solver.iters=5", "eval.every=1"]
        acfg = load_config(AdaptConfig, recipe if recipe.is_file() else None, overrides)
        say(f"    UDA {source.name} -> {target.name} (target labels unused) -> {run_out}")
        adapt(acfg, resume=(run_out / "last.pt").is_file())
    summary = json.loads((run_out / "summary.json").read_text())
    tq, tg = step_baseline(load_dataset("market1501", target), say)
    rows.append(evaluate_features(f"colour histogram on {target.name}", tq, tg, "euclidean")[0])
    for key, name in (("initial", f"{source.name} model on {target.name}, no adaptation"),
                      ("final", f"{source.name} model adapted to {target.name} (UDA)")):
        m = summary.get(key) or {}
        if "mAP" in m:
            rows.append({"model": name, **{k: float(m[k]) for k in ("mAP", "R1", "R5", "R10", "mINP") if k in m}})
    if (run_out / "log.csv").is_file():
        logs.append((f"UDA {source.name} -> {target.name}", run_out / "log.csv"))
    return f"--adapt: rows marked {target.name} are evaluated on {target.name}'s query/gallery; run in {run_out}"


def write_report(report_dir: Path, rows, curves, ranked_from, logs, notes, cfg: DemoConfig, synth) -> Path:
    from reidkit.report import plot_cmc, plot_training_curves, save_ranked_lists, write_html_report

    report_dir.mkdir(parents=True, exist_ok=True)
    figures = [("CMC curve", plot_cmc(curves, report_dir / "cmc.png", title=f"CMC on {synth.domains[0].name}"))]
    for i, (name, log) in enumerate(logs):
        if log.is_file():
            figures.append((f"Training curves: {name}",
                            plot_training_curves(log, report_dir / f"training_curves_{i}.png", title=name,
                                                 x_label="iteration" if "DINO" in name else "epoch")))
    q, g, dist, which = ranked_from
    ranked = save_ranked_lists(dist, q, g, report_dir / "ranked_lists", num_queries=cfg.ranked_queries,
                               seed=cfg.seed)
    stats = [{"city": city, "split": split, **{k: v for k, v in s.items()}}
             for city, splits in synth.stats.items() if city != "pool" for split, s in splits.items()]
    demo_notes = [f"reidkit demo, seed {cfg.seed}{', fast' if cfg.fast else ''}; evaluated on "
                  f"{synth.domains[0].name} (Market-1501 protocol). Ranked lists: {which}.", *notes]
    return write_html_report(report_dir, title="reidkit demo: synthetic benchmark", results=rows,
                             figures=figures, ranked_lists=ranked, tables=[("Synthetic benchmark", stats)],
                             notes=demo_notes)
