"""UDA as a workflow: train the supervised source model first (when only its recipe is given), then
adapt it to the unlabelled target (Dai et al. 2021 cluster contrast, as TransReID-SSL §4.3 runs it).

    from reidkit.workflows.uda import adapt_with_source
    run_dir = adapt_with_source(cfg)     # cfg.mode == 'uda', cfg.source.config = a fine-tuning recipe

The source run lives in ``<output>/source`` and is reused (or resumed) on a rerun.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable


def train_source(cfg: Any, say: Callable[[str], None] = print) -> Path:
    """Train (or reuse) the source model of ``cfg.source.config``; returns its model file."""
    from reidkit.config import load_config
    from reidkit.methods.adapt import AdaptError
    from reidkit.methods.finetune import FinetuneConfig, train

    run = Path(cfg.output) / "source"
    if (run / "summary.json").is_file():
        say(f"source model already trained: {run}")
    else:
        scfg = load_config(FinetuneConfig, cfg.source.config, [*cfg.source.overrides, f"output={run}"])
        say(f"UDA step 1/2: supervised training on the source ({scfg.data.format} at {scfg.data.root})")
        train(scfg, resume=(run / "last.pt").is_file())
    for name in ("best.safetensors", "last.safetensors"):
        if (run / name).is_file():
            return run / name
    raise AdaptError(f"{run}: the source training wrote no model")


def adapt_with_source(cfg: Any, resume: bool = False, force: bool = False,
                      say: Callable[[str], None] = print) -> Path:
    """``adapt(cfg)``, after training the source model when ``mode=uda`` names only ``source.config``."""
    from reidkit.engine.run import open_run_folder
    from reidkit.methods.adapt import AdaptError, adapt

    if cfg.mode == "uda" and not cfg.source.model:
        cfg.check(1)
        open_run_folder(Path(cfg.output), cfg, resume, AdaptError, write=False, force=force)  # fail before training
        model = train_source(cfg, say)
        cfg = dataclasses.replace(cfg, source=dataclasses.replace(cfg.source, model=str(model)))
    return adapt(cfg, resume=resume, force=force)
