"""``reidkit models``, ``reidkit extract`` and ``reidkit export onnx``: the model side of the CLI."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from reidkit.cli.common import console, err_console, user_errors

export_app = typer.Typer(help="Export models to other runtimes.", no_args_is_help=True)


def _overrides(items: list[str] | None) -> dict:
    """``key=value`` model overrides, values parsed as YAML (``img_size=[384,128]``, ``knn_k=0.7``)."""
    import yaml

    from reidkit.models import ModelConfigError

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ModelConfigError(f"--set {item!r}: expected key=value, e.g. --set neck_feat=after")
        out[key.strip()] = yaml.safe_load(value)
    return out


FEATURE_SUFFIXES = (".safetensors", ".npz")


class InputError(ValueError):
    """A command-line input refused before any heavy work (names the option, the path and what to do)."""


def check_model_args(model: Path | None, preset: str | None, weights: Path | None, sets: list[str] | None) -> None:
    """Refuse a wrong --model/--preset/--weights combination or file, without importing torch.

    ``last.pt`` is a training state (optimizer, RNG, for ``--resume``): point to the run's model
    files. A foreign ``.pth`` goes through ``--preset NAME --weights FILE``.
    """
    if (model is None) == (preset is None):
        raise InputError("give exactly one of --model FILE.safetensors or --preset NAME")
    if model is None:
        if weights is not None and not weights.is_file():
            raise InputError(f"--weights {weights}: file not found")
        return
    if weights is not None or sets:
        raise InputError("--weights and --set go with --preset; a model file carries its own config")
    if not model.is_file():
        raise InputError(f"--model {model}: file not found" + (" (it is a folder; pass the run's "
                         "best.safetensors)" if model.is_dir() else ""))
    if model.suffix == ".safetensors":
        return
    run_models = [p.name for p in (model.with_name("best.safetensors"), model.with_name("last.safetensors"))
                  if p.is_file()]
    if model.suffix == ".pt" and (run_models or model.name in ("last.pt", "best.pt")):
        use = f"{model.parent / run_models[0]}" if run_models else "the run's best.safetensors or last.safetensors"
        raise InputError(f"--model {model}: is a training state (weights, optimizer and RNG for --resume), "
                         f"not a model file; use {use}")
    raise InputError(f"--model {model}: takes a reidkit model file (.safetensors, written by train/adapt/"
                     "pretrain); for an official or other checkpoint (.pth, .pth.tar, .bin) use "
                     f"--preset NAME --weights {model} (see `reidkit models` for the presets)")


def check_feature_out(out: Path) -> None:
    """The feature file suffix, before any image is read (``--out x.csv`` used to fail after extracting)."""
    if out.suffix not in FEATURE_SUFFIXES:
        raise InputError(f"--out {out}: unknown feature file suffix {out.suffix!r}; use .safetensors or .npz")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give a file name ending in .safetensors or .npz")


def open_model(model: Path | None, preset: str | None, weights: Path | None, sets: list[str] | None,
               head: bool = True):
    """A ReIDModel from our model file, or from a preset (+ any foreign checkpoint via load_weights)."""
    from reidkit.models import build_model, load_model
    from reidkit.models.checkpoints import load_weights

    check_model_args(model, preset, weights, sets)
    if model is not None:
        return load_model(model)
    net = build_model(preset, **_overrides(sets))
    if weights is not None:
        report = load_weights(net, weights, head=head)
        err_console.print(report.summary(), highlight=False, markup=False)
    return net.eval()


def models_command(
    flops: bool = typer.Option(True, "--flops/--no-flops", help="Count GFLOPs (meta device, a few seconds)."),
) -> None:
    """List the model presets: architecture, input size, backbone parameters and GFLOPs."""
    with user_errors():
        from rich.table import Table

        from reidkit.models import PRESETS
        from reidkit.models.model_stats import preset_stats

        from rich import box

        table = Table(title="model presets: backbone params, GFLOPs (2 x MACs) per image",
                      box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
        for col in ("preset", "stem", "input", "dim", "depth", "heads", "params", "GFLOPs"):
            table.add_column(col, no_wrap=True, justify="left" if col in ("preset", "stem") else "right")
        for name, spec in PRESETS.items():
            if flops:
                st = preset_stats(name)
                params, gf = st["params"], f"{st['gflops']:.2f}" if st["gflops"] >= 0.1 else f"{st['gflops']:.4f}"
            else:
                params, gf = preset_stats_params(name), "-"
            vit = spec.arch == "vit"
            table.add_row(name, spec.stem if vit else "-", f"{spec.img_size[0]}x{spec.img_size[1]}",
                          str(spec.embed_dim), str(spec.depth) if vit else "50",
                          str(spec.num_heads) if vit else "-", f"{params:,}", gf)
        console.print(table)


def preset_stats_params(name: str) -> int:
    import torch

    from reidkit.models import build_model

    with torch.device("meta"):
        return sum(p.numel() for p in build_model(name).backbone.parameters())


def extract_command(
    out: Path = typer.Option(..., "--out", "-o", help="Feature file to write (.safetensors or .npz)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="A reidkit model file (.safetensors)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Build a preset instead (see `reidkit models`)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="With --preset: any known checkpoint layout "
                                           "(official TransReID-SSL / DINO / cluster-contrast / timm)."),
    sets: Optional[List[str]] = typer.Option(None, "--set", help="With --preset: model override key=value, "
                                             "e.g. --set neck_feat=after --set img_size=[384,128]."),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset root."),
    fmt: str = typer.Option("market1501", "--format", "-f", help="Dataset format (see `reidkit datasets formats`)."),
    split: str = typer.Option("query", "--split", help="query, gallery or train."),
    images: Optional[Path] = typer.Option(None, "--images", help="Or: a folder of crops (recursive)."),
    flip: bool = typer.Option(False, "--flip", help="Average with the horizontally flipped image."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Default 512 on CUDA, 64 on CPU."),
    amp: Optional[str] = typer.Option(None, "--amp", help="Autocast dtype: bf16 or fp16, fp32 for none "
                                      "(default bf16 on CUDA that has it, else fp32)."),
    device: str = typer.Option("auto", "--device", help="auto (cuda when available), cpu, cuda, cuda:1 ..."),
    workers: int = typer.Option(2, "--workers", help="Image decoding processes."),
    normalize: bool = typer.Option(False, "--normalize", help="L2-normalise the stored features."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model (pays off on large folders)."),
    decode: str = typer.Option("auto", "--decode", help="auto (device on CUDA), pil, or device (nvjpeg)."),
) -> None:
    """Extract features of a dataset split or a folder of images into a feature file for `reidkit eval`.

    Under torchrun every rank extracts a shard and rank 0 merges them into --out, in order."""
    with user_errors():
        # Everything a user can get wrong is checked before torch is imported or an image is read.
        check_feature_out(out)
        if (data is None) == (images is None):
            raise InputError("give exactly one of --data ROOT (with --format/--split) or --images FOLDER")
        if amp not in (None, "bf16", "fp16", "fp32"):
            raise InputError(f"--amp must be bf16, fp16 or fp32, got {amp!r}")
        if split not in ("query", "gallery", "train"):
            raise InputError(f"--split must be query, gallery or train, got {split!r}")
        if images is not None and not images.is_dir():
            raise InputError(f"--images {images}: folder not found" + (" (it is a file; --images takes a "
                             "folder of crops)" if images.exists() else ""))
        check_model_args(model, preset, weights, sets)
        if images is not None:
            source, what = images, str(images)
        else:
            from reidkit.data.datasets import load_dataset

            source, what = getattr(load_dataset(fmt, data), split), f"{data} [{split}]"

        import torch

        from reidkit.evaluation.collapse import check_collapse
        from reidkit.evaluation.extract import extract_to_file, init_torchrun

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        rank, _, device = init_torchrun(device)
        on_gpu = device.startswith("cuda")
        batch_size = batch_size or (512 if on_gpu else 64)
        amp = None if amp == "fp32" else amp or ("bf16" if on_gpu and torch.cuda.is_bf16_supported() else None)
        net = open_model(model, preset, weights, sets).to(device)
        # eval-only speed-ups: stem BatchNorms folded, channels-last convs, weights cast once for --amp
        from reidkit.models.inference import prepare_for_inference
        prepare_for_inference(net, amp)
        start = time.perf_counter()
        fs = extract_to_file(net, source, out, meta=dict(model=str(model or preset), split=split if data else
                                                          "images", source=what),
                             batch_size=batch_size, flip=flip, device=device, num_workers=workers, amp_dtype=amp,
                             normalize=normalize, description=f"extract {split if data else 'images'}",
                             decode=decode, compile=compile_)
        seconds = time.perf_counter() - start
        if rank:
            return
        skipped = len(fs.meta.get("skipped", []))
        console.print(f"{len(fs)} features of dim {fs.features.shape[1] if len(fs) else 0} from {what} -> "
                      f"[bold]{out}[/] in {seconds:.1f} s ({len(fs) / max(seconds, 1e-9):.1f} img/s)"
                      + (f"; skipped {skipped} unreadable image(s)" if skipped else ""), highlight=False)
        collapse = check_collapse(fs.features)
        if collapse is not None and collapse.collapsed:
            err_console.print(f"[yellow]warning:[/] {out}: {collapse.message()}", highlight=False, soft_wrap=True)


@export_app.command("onnx")
def export_onnx_command(
    model: Path = typer.Argument(..., help="A reidkit model file (.safetensors)."),
    out: Path = typer.Argument(..., help="Output .onnx file."),
    opset: int = typer.Option(17, "--opset"),
    check: bool = typer.Option(True, "--check/--no-check", help="Compare with PyTorch in onnxruntime."),
    atol: float = typer.Option(1e-4, "--atol", help="Largest accepted |onnx - torch| difference."),
) -> None:
    """Export a model to ONNX (dynamic batch) and print the parity check against PyTorch."""
    with user_errors():
        from reidkit.models import load_model
        from reidkit.models.export_onnx import export_onnx

        net = load_model(model)
        result = export_onnx(net, out, opset=opset, check=check, atol=atol)
        h, w = result.img_size
        console.print(f"wrote [bold]{result.path}[/]: input images (B, 3, {h}, {w}) float32, "
                      f"output features (B, {net.feat_dim}), opset {opset}", highlight=False)
        if result.max_abs_diff is not None:
            sizes = ", ".join(map(str, result.batch_sizes))
            console.print(f"parity: max |onnxruntime - torch| = {result.max_abs_diff:.2e} "
                          f"at batch sizes {sizes} (tolerance {atol:.0e}) OK", highlight=False)


def register(app: typer.Typer) -> None:
    app.command(name="models")(models_command)
    app.command(name="extract")(extract_command)
    app.add_typer(export_app, name="export")
