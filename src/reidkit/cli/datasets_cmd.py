"""``reidkit datasets check PATH --format F`` and ``reidkit datasets formats``."""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Optional

import typer

from reidkit.cli.common import console, user_errors

datasets_app = typer.Typer(help="Inspect dataset folders: statistics and every problem found.",
                           no_args_is_help=True)

MAX_LISTED = 50  # corrupt files printed; --bad-list saves all of them


def _parse_options(options: list[str]) -> dict[str, Any]:
    """``key=value`` pairs for the reader; values parsed as YAML scalars (true, 3, 0.5, text)."""
    import yaml

    from reidkit.data.records import DatasetError

    out: dict[str, Any] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DatasetError(f"--option {item!r}: expected key=value, e.g. -o variant=labeled")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value) if value else ""
    return out


@datasets_app.command("check")
def check(
    path: Path = typer.Argument(..., help="Dataset root folder (or the .csv manifest for --format csv)."),
    fmt: str = typer.Option("market1501", "--format", "-f", help="Dataset format; see 'reidkit datasets formats'."),
    options: list[str] = typer.Option([], "--option", "-o",
                                      help="Reader option key=value, repeatable (e.g. -o extra_gallery=true, "
                                           "-o variant=labeled, -o keep_ratio=0.5)."),
    verify_images: bool = typer.Option(False, "--verify-images",
                                       help="Decode every image and report corrupt or truncated files."),
    workers: int = typer.Option(2, "--workers", help="Decoding threads for --verify-images."),
    bad_list: Optional[Path] = typer.Option(None, "--bad-list", help="Write every corrupt image path to this file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Print the statistics table (ids / images / cameras per split) and every problem found.

    Exit status 1 when the dataset cannot be used as is (missing or empty splits, corrupt images).
    """
    with user_errors():
        from reidkit.data.datasets import load_dataset
        from reidkit.data.images import verify_images as verify
        from reidkit.utils.io import atomic_write_text
        from reidkit.utils.progress import make_progress

        ds = load_dataset(fmt, path, strict=False, **_parse_options(options))
        from reidkit.data.records import VideoDataset

        if isinstance(ds, VideoDataset):  # tracklet formats have their own report
            from reidkit.cli.video_data_cmd import check_tracklets

            return check_tracklets(ds, as_json=as_json, verify_images=verify_images, workers=workers,
                                   bad_list=bad_list)
        errors = list(getattr(ds, "errors", []))
        warnings = [p for p in ds.problems if p not in errors]
        corrupt: list[tuple[str, str]] = []
        if verify_images:
            paths = sorted({r.path for split in (ds.train, ds.query, ds.gallery) for r in split})
            with make_progress() as progress:
                task = progress.add_task("decoding images", total=len(paths))
                corrupt = verify(paths, workers=workers, on_progress=lambda n: progress.advance(task, n))
            if bad_list is not None:
                atomic_write_text(bad_list, "".join(f"{p}\n" for p, _ in corrupt))
        stats = ds.statistics()

        if as_json:
            typer.echo(json.dumps({
                "name": ds.name, "root": getattr(ds, "root", str(path)),
                "splits": {s: {"ids": i, "images": n, "cameras": c} for s, i, n, c in stats},
                "errors": errors, "warnings": warnings, "notes": list(getattr(ds, "notes", [])),
                "corrupt_images": [{"path": p, "problem": m} for p, m in corrupt] if verify_images else None,
            }))
        else:
            _print_report(ds, stats, errors, warnings, corrupt, verify_images, bad_list)
        if errors or corrupt:
            raise typer.Exit(code=1)


def print_problems(ds, errors: list[str], warnings: list[str], corrupt: list | None, bad_list, unit: str) -> None:
    """The notes, errors and warnings of a parsed dataset, then (``corrupt`` not None: images were decoded)
    the corrupt files, at most MAX_LISTED of them; shared by the image and the tracklet reports."""
    for note in getattr(ds, "notes", []):
        console.print(f"[dim]note:[/] {note}", highlight=False)
    for msg in errors:
        console.print(f"[bold red]error:[/] {msg}", highlight=False)
    for msg in warnings:
        console.print(f"[yellow]warning:[/] {msg}", highlight=False)
    if corrupt is None:
        return
    if not corrupt:
        console.print(f"[green]all {unit}s decode[/]")
        return
    console.print(f"[bold red]{len(corrupt)} corrupt {unit}(s):[/]", highlight=False)
    for p, problem in corrupt[:MAX_LISTED]:
        console.print(f"  {p}: {problem}", highlight=False)
    if len(corrupt) > MAX_LISTED:
        console.print(f"  ... and {len(corrupt) - MAX_LISTED} more"
                      + ("" if bad_list else " (save all with --bad-list FILE)"))
    if bad_list:
        console.print(f"all corrupt paths written to {bad_list}")


def _print_report(ds, stats, errors, warnings, corrupt, verified: bool, bad_list: Path | None) -> None:
    from rich.table import Table

    unlabelled = all(r.pid == -1 for r in ds.train) and not ds.query and not ds.gallery
    table = Table(title=f"{ds.name}: {getattr(ds, 'root', '')}", title_justify="left")
    for col in ("subset", "# ids", "# images", "# cameras"):
        table.add_column(col, justify="left" if col == "subset" else "right")
    for split, ids, images, cams in stats:
        if unlabelled and split != "train":
            continue
        table.add_row(split, "-" if unlabelled else str(ids), str(images), "-" if unlabelled else str(cams))
    console.print(table)
    print_problems(ds, errors, warnings, corrupt if verified else None, bad_list, "image")
    if not errors and not warnings and not corrupt:
        console.print("[green]no problems found[/]")


@datasets_app.command("formats")
def formats() -> None:
    """List the supported dataset formats and their reader options."""
    with user_errors():
        from rich.table import Table

        from reidkit.data.datasets import FORMATS, get_reader

        table = Table(title="dataset formats (reidkit datasets check PATH --format NAME -o key=value)",
                      title_justify="left")
        for col in ("format", "options", "layout"):
            table.add_column(col)
        for name, info in FORMATS.items():
            params = inspect.signature(get_reader(name)).parameters.values()
            opts = ", ".join(f"{p.name}={p.default!r}" for p in params
                             if p.kind == p.KEYWORD_ONLY and p.name != "strict")
            table.add_row(name, opts or "-", info.description)
        console.print(table)
        console.print(SPLITS_HELP, highlight=False)


SPLITS_HELP = ("splits: train, query, gallery. A csv manifest's optional 4th column 'split' takes one of "
               "these (empty: train); a folder dataset may hold train/, query/ and gallery/ sub-folders; "
               "`reidkit extract --split` and `reidkit index build --split` pick one.")


def register(app: typer.Typer) -> None:
    app.add_typer(datasets_app, name="datasets")
