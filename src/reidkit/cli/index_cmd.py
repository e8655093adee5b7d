"""``reidkit index build|add|info``, ``reidkit search`` and ``reidkit serve``: gallery search."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from reidkit.cli.common import console, user_errors

index_app = typer.Typer(help="Build, grow and inspect a faiss gallery index (flat / HNSW / IVF-PQ).",
                        no_args_is_help=True)

KIND_HELP = "auto (flat up to 100k, ivfpq beyond), flat (exact), hnsw, ivfpq"
NPROBE_HELP = "ivfpq: inverted lists visited per query (default 35% of nlist; fewer is faster, lower recall)"
K_FACTOR_HELP = "ivfpq with refine: PQ candidates re-scored per result wanted (default 4)"
EF_SEARCH_HELP = "hnsw: search beam width (default 128; larger is slower, higher recall)"
SOURCE_HELP = ("a feature file (.safetensors/.npz from `reidkit extract`), or with --model an image, "
               "a folder of images, or a dataset root with --dataset")


def _gallery(source: Path, model: Optional[Path], dataset: Optional[str], split: str, batch_size: int,
             index=None):
    """(features, pids, camids, paths, default roots, model info) from a feature file or images."""
    from reidkit.retrieval.index import IndexFileError

    FEATURE_SUFFIXES = (".safetensors", ".npz")
    # Wrong sources are refused here, before torch and the model are loaded.
    if not source.exists():
        raise IndexFileError(f"{source}: not found")
    if source.is_file() and source.suffix.lower() == ".csv" and not dataset:
        raise IndexFileError(f"{source}: is a CSV manifest; index its images with --dataset csv "
                             f"(--split {split} picks the rows), or pass a feature file from `reidkit extract`")
    if model is not None and not model.is_file():
        raise IndexFileError(f"--model {model}: file not found")
    from reidkit.retrieval.encoder import encode_gallery

    if source.is_file() and source.suffix in FEATURE_SUFFIXES:
        if dataset:
            raise ValueError("--dataset applies to image folders, not to feature files")
        from reidkit.evaluation.featurefile import load_features

        fs = load_features(source)
        return fs.features, fs.pids, fs.camids, fs.paths, [], None
    return encode_gallery(source, model, dataset=dataset, split=split, batch_size=batch_size, index=index)


def build(source: Path = typer.Argument(..., help=SOURCE_HELP),
          out: Path = typer.Option(..., "--out", "-o", help="index folder to write"),
          kind: str = typer.Option("auto", help=KIND_HELP),
          root: list[Path] = typer.Option([], "--root", help="image root(s) the web UI may serve from "
                                          "(default: the images' common folder)"),
          model: Optional[Path] = typer.Option(None, help="model file (.safetensors) to embed images"),
          dataset: Optional[str] = typer.Option(None, help="dataset format of SOURCE (e.g. market1501)"),
          split: str = typer.Option("gallery", help="dataset split to index"),
          nlist: Optional[int] = typer.Option(None, help="ivfpq: inverted lists (default 2 sqrt(N))"),
          nprobe: Optional[int] = typer.Option(None, help=NPROBE_HELP),
          refine: Optional[str] = typer.Option(None, help="ivfpq: re-score candidates with sq8 or flat copies "
                                               "of the vectors (default sq8: near-exact ranking, D bytes per image) or none (codes only)"),
          k_factor: Optional[float] = typer.Option(None, help=K_FACTOR_HELP),
          ef_search: Optional[int] = typer.Option(None, help=EF_SEARCH_HELP),
          batch_size: int = typer.Option(64, help="images per forward pass"),
          force: bool = typer.Option(False, help="overwrite an existing index folder")) -> None:
    """Build a gallery index from features or images."""
    with user_errors():
        from reidkit.retrieval.index import GalleryIndex, IndexFileError

        if (out / "meta.json").exists() and not force:
            raise IndexFileError(f"{out}: an index already exists; use `reidkit index add` or --force")
        feats, pids, camids, paths, roots, model_info = _gallery(source, model, dataset, split, batch_size)
        params = {k: v for k, v in (("nlist", nlist), ("nprobe", nprobe), ("efSearch", ef_search),
                                    ("refine", refine), ("k_factor", k_factor)) if v is not None}
        with console.status(f"building the index over {len(feats)} vectors"):
            idx = GalleryIndex.build(feats, pids, camids, paths, kind=kind, roots=list(root) or roots,
                                     params=params, model=model_info)
            idx.save(out)  # replaces an old index atomically (new generation, then meta.json)
        _print_info(idx.info())


def add(index: Path = typer.Argument(..., help="index folder"),
        source: Path = typer.Argument(..., help=SOURCE_HELP),
        root: list[Path] = typer.Option([], "--root", help="image root(s) of the new images"),
        model: Optional[Path] = typer.Option(None, help="model file to embed images (default: the index's)"),
        dataset: Optional[str] = typer.Option(None, help="dataset format of SOURCE"),
        split: str = typer.Option("gallery", help="dataset split to add"),
        batch_size: int = typer.Option(64, help="images per forward pass")) -> None:
    """Append features or images to an index (written atomically: a killed run leaves the old index)."""
    with user_errors():
        from reidkit.retrieval.index import GalleryIndex

        idx = GalleryIndex.load(index)
        before = len(idx)
        feats, pids, camids, paths, roots, _ = _gallery(source, model, dataset, split, batch_size, index=idx)
        idx.add(feats, pids, camids, paths, roots=list(root) or roots, source=str(source))
        idx.save(index)
        console.print(f"added {len(idx) - before} vectors to {index}: {len(idx)} in total")


def info(index: Path = typer.Argument(..., help="index folder"),
         as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Show an index's kind, size, identities, cameras, roots and parameters."""
    with user_errors():
        from reidkit.retrieval.index import GalleryIndex

        i = GalleryIndex.load(index).info()
        if as_json:
            typer.echo(json.dumps(i, indent=2))
        else:
            _print_info(i)


def search_cmd(index: Path = typer.Argument(..., help="index folder"),
               queries: Path = typer.Argument(..., help="query feature file, image, or folder of images"),
               k: int = typer.Option(20, "-k", "--top-k", help="results per query"),
               as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
               model: Optional[Path] = typer.Option(None, help="model for image queries (default: the index's)"),
               out: Optional[Path] = typer.Option(None, help="also write the JSON results to this file"),
               max_tables: int = typer.Option(20, help="tables shown (all queries go to --json/--out)"),
               nprobe: Optional[int] = typer.Option(None, help=NPROBE_HELP + "; overrides the index's value"),
               k_factor: Optional[float] = typer.Option(None, help=K_FACTOR_HELP + "; overrides the index's value"),
               ef_search: Optional[int] = typer.Option(None, help=EF_SEARCH_HELP + "; overrides the index's value"),
               ) -> None:
    """Rank the gallery for each query: cosine scores, pids, cameras and image paths."""
    with user_errors():
        from reidkit.retrieval.index import GalleryIndex
        from reidkit.retrieval.search import load_queries, render_table, search

        idx = GalleryIndex.load(index)
        idx.set_search_params(nprobe=nprobe, k_factor=k_factor, efSearch=ef_search)
        q = load_queries(queries, model=model, index=idx)
        results = search(idx, q, k, source=str(queries))
        if out is not None:
            from reidkit.utils.io import save_json
            save_json(out, results)
        if as_json:
            typer.echo(json.dumps(results, indent=1))
        else:
            console.print(render_table(results, max_tables))
            if len(results) > max_tables:
                console.print(f"[dim]{len(results) - max_tables} more queries not shown; use --json or --out[/]")


def serve_cmd(index: Path = typer.Argument(..., help="index folder"),
              model: Optional[Path] = typer.Option(None, help="model file; enables searching by uploaded image"),
              host: str = typer.Option("127.0.0.1", help="address to listen on"),
              port: int = typer.Option(8000, help="TCP port"),
              token: Optional[str] = typer.Option(None, envvar="REIDKIT_TOKEN",
                                                  help="require this token on every route (Bearer header, or a cookie set by opening /?token=...)"),
              max_upload_mb: float = typer.Option(10.0, help="largest accepted upload, MiB")) -> None:
    """Serve the web UI: pick or upload a query image, see the ranked gallery."""
    with user_errors():
        from reidkit.cli.common import err_console
        from reidkit.retrieval.server import serve
        from reidkit.retrieval.uploads import UploadLimits

        if host not in ("127.0.0.1", "localhost", "::1") and not token:
            err_console.print(f"[yellow]warning:[/] serving on {host} without --token: anyone who can reach "
                              "this port can search the gallery and view its images")
        url = f"http://{host}:{port}/"
        console.print(f"open {url}" + ("?token=<your token> once (the value of --token / REIDKIT_TOKEN; "
                                       "the page then keeps it in a cookie)" if token else ""), highlight=False)
        serve(index, model, host, port, token, UploadLimits(max_bytes=int(max_upload_mb * 1024 * 1024)))


def _print_info(i: dict) -> None:
    from rich.table import Table

    t = Table(title=f"index {i['folder']}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for key in ("kind", "count", "dim", "identities", "cameras"):
        t.add_row(key, str(i[key]))
    t.add_row("roots", "\n".join(i["roots"]) or "-")
    t.add_row("params", ", ".join(f"{k}={v}" for k, v in i["params"].items()) or "-")
    t.add_row("model", i["model"]["path"] if i.get("model") else "-")
    console.print(t)


def register(app: typer.Typer) -> None:
    index_app.command(name="build")(build)
    index_app.command(name="add")(add)
    index_app.command(name="info")(info)
    app.add_typer(index_app, name="index")
    app.command(name="search")(search_cmd)
    app.command(name="serve")(serve_cmd)
