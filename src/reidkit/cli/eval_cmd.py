"""``reidkit eval QUERY_FEATURES GALLERY_FEATURES``: metrics of two feature files, with optional re-ranking."""
from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from reidkit.cli.common import console, err_console, user_errors


class Metric(str, Enum):
    cosine = "cosine"
    euclidean = "euclidean"


class Protocol(str, Enum):
    auto = "auto"
    market = "market"
    cuhk03 = "cuhk03"
    no_camera = "no-camera"


class Rerank(str, Enum):
    none = "none"
    kreciprocal = "kreciprocal"
    gcr = "gcr"
    qe = "qe"


def resolve_protocol(protocol: str, query, gallery) -> str:
    """``auto``: the Market protocol when both sets carry camera ids, else ``no-camera``."""
    if protocol != "auto":
        return protocol
    known = (query.camids >= 0).any() and (gallery.camids >= 0).any()
    return "market" if known else "no-camera"


def rerank_params(method: str, k1, k2, lam, beta1, beta2, scale, rounds, gcr_mode, pvg, pvg_lambda,
                  qe_k, qe_alpha, qe_times) -> dict:
    """The chosen method's keyword arguments; options left unset keep the method's defaults."""
    chosen = {
        "kreciprocal": {"k1": k1, "k2": k2, "lambda_value": lam},
        "gcr": {"k1": k1, "k2": k2, "beta1": beta1, "beta2": beta2, "scale": scale, "rounds": rounds,
                "mode": gcr_mode, "pvg": pvg, "pvg_lambda": pvg_lambda},
        "qe": {"k": qe_k, "alpha": qe_alpha, "times": qe_times},
    }.get(method, {})
    return {k: v for k, v in chosen.items() if v is not None}


def eval_command(
    query_features: Path = typer.Argument(..., help="Query feature file (.safetensors or .npz)."),
    gallery_features: Path = typer.Argument(..., help="Gallery feature file (.safetensors or .npz)."),
    metric: Metric = typer.Option(Metric.cosine, help="Distance between features."),
    protocol: Protocol = typer.Option(Protocol.auto, help="auto = market when camera ids are known, else no-camera."),
    max_rank: int = typer.Option(50, help="Length of the CMC curve."),
    rerank: Rerank = typer.Option(Rerank.none, help="Re-ranking applied before the metrics."),
    k1: Optional[int] = typer.Option(None, help="kreciprocal k1 (20) / gcr kNN size (15)."),
    k2: Optional[int] = typer.Option(None, help="kreciprocal k2 (6) / gcr cross-camera kNN size (3)."),
    lam: Optional[float] = typer.Option(None, "--lambda", help="kreciprocal weight of the original distance (0.3)."),
    beta1: Optional[float] = typer.Option(None, help="gcr kernel temperature of the kNN graph (0.2)."),
    beta2: Optional[float] = typer.Option(None, help="gcr kernel temperature of the cross-camera graph (0.2)."),
    scale: Optional[float] = typer.Option(None, help="gcr mix: 0 = kNN graph only, 1 = cross-camera only (0.3)."),
    rounds: Optional[int] = typer.Option(None, help="gcr propagation rounds (3)."),
    gcr_mode: Optional[str] = typer.Option(None, help="gcr normalisation: nonsym, sym or localk (nonsym)."),
    pvg: Optional[bool] = typer.Option(None, "--pvg/--no-pvg", help="gcr profile vectors per camera (on)."),
    pvg_lambda: Optional[float] = typer.Option(None, help="gcr profile-vector ridge (10)."),
    qe_k: Optional[int] = typer.Option(None, help="qe neighbours (5)."),
    qe_alpha: Optional[float] = typer.Option(None, help="qe weight exponent, 0 = average QE (3)."),
    qe_times: Optional[int] = typer.Option(None, help="qe rounds (1)."),
    tpr: bool = typer.Option(False, "--tpr", help="Also report TPR at FPR 1e-4, 1e-3, 1e-2."),
    cuhk03_repeats: int = typer.Option(10, help="Random single-shot draws of the cuhk03 protocol."),
    seed: int = typer.Option(0, help="Seed of the cuhk03 draws."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write an HTML report (CMC curve, "
                                          "ranked lists when the files carry image paths) into this folder."),
) -> None:
    """Evaluate QUERY against GALLERY: CMC, mAP, mINP (and TPR@FPR), with optional re-ranking."""
    with user_errors():
        for name, path in (("query", query_features), ("gallery", gallery_features)):
            if not path.is_file():  # before numpy/torch are imported
                raise FileNotFoundError(f"{path}: {name} feature file not found")
        if report is not None and report.exists() and not report.is_dir():
            raise FileNotFoundError(f"--report {report}: exists and is not a folder")
        from reidkit.evaluation.featurefile import load_features

        query, gallery = load_features(query_features), load_features(gallery_features)
        advice = _unlabelled_advice(query, gallery, query_features, gallery_features)
        if advice:
            raise ValueError(advice)
        dq, dg = query.features.shape[1], gallery.features.shape[1]
        if dq != dg:  # before torch: features of two different models (or a wrong file)
            raise ValueError(f"{query_features} holds {dq}-d features but {gallery_features} holds {dg}-d: "
                             "extract both sides with the same model")
        from reidkit.evaluation.metrics import DEFAULT_FPRS, evaluate
        from reidkit.evaluation.rerank import apply_rerank
        params = rerank_params(rerank.value, k1, k2, lam, beta1, beta2, scale, rounds, gcr_mode, pvg,
                               pvg_lambda, qe_k, qe_alpha, qe_times)
        from reidkit.evaluation.video import kind_of

        if kind_of(query) != "images" or kind_of(gallery) != "images":  # files of `reidkit extract-video`
            if report is not None:
                raise ValueError("--report: not available for tracklet/frame feature files; evaluate them "
                                 "without --report")
            _eval_video(query, gallery, query_features, gallery_features, rerank.value, params, metric.value,
                        max_rank, as_json)
            return
        proto = resolve_protocol(protocol.value, query, gallery)
        start = time.perf_counter()
        distmat, query, gallery = apply_rerank(rerank.value, query, gallery, metric=metric.value, **params)
        rerank_s = time.perf_counter() - start
        res = evaluate(distmat, query=query, gallery=gallery, metric=metric.value, protocol=proto,
                       max_rank=max_rank, tpr_fprs=DEFAULT_FPRS if tpr else None,
                       cuhk03_repeats=cuhk03_repeats, seed=seed)
        seconds = time.perf_counter() - start
        page = None
        if report is not None:
            from reidkit.report.run_report import write_eval_report

            page = write_eval_report(report, query, gallery, qpath=query_features, gpath=gallery_features,
                                     metric=metric.value, protocol=proto, distmat=distmat,
                                     label=f"{query_features.stem}" + (f" + {rerank.value}" if rerank.value != "none" else ""))
        if as_json:
            out = {"mAP": res["mAP"], "mINP": res["mINP"], "cmc": [float(c) for c in res["cmc"]],
                   "num_valid_queries": res["num_valid_queries"],
                   "num_skipped_queries": res["num_skipped_queries"], "protocol": proto,
                   "metric": metric.value, "rerank": rerank.value, "rerank_params": params,
                   "seconds": round(seconds, 4)}
            if tpr:
                out["tpr@fpr"] = {f"{f:g}": v for f, v in res["tpr@fpr"].items()}
            if page is not None:
                out["report"] = str(page)
            typer.echo(json.dumps(out))
            return
        _print_table(res, query_features, gallery_features, proto, metric.value, rerank.value, params,
                     rerank_s, seconds, len(query), len(gallery))
        _warn_unmatched(res, query, gallery, query_features, gallery_features, proto)
        if page is not None:
            console.print(f"report: [bold]{page}[/]", highlight=False)


def _eval_video(query, gallery, qpath, gpath, rerank, params, metric, max_rank, as_json) -> None:
    """Tracklet / frame feature files: the video protocols (mode from the files' kinds, MARS rules);
    ``--rerank gcr`` uses tracklet profile vectors."""
    from reidkit.evaluation.video import evaluate_video

    if rerank not in ("none", "gcr"):
        raise ValueError(f"--rerank {rerank}: video feature files support none or gcr (tracklet profiles)")
    start = time.perf_counter()
    res = evaluate_video(query, gallery, rerank=rerank, gcr_overrides=params, metric=metric, max_rank=max_rank)
    seconds = time.perf_counter() - start
    proto = f"video {res['mode']} (MARS rules)"
    if as_json:
        typer.echo(json.dumps({"mAP": res["mAP"], "mINP": res["mINP"], "cmc": [float(c) for c in res["cmc"]],
                               "num_valid_queries": res["num_valid_queries"],
                               "num_skipped_queries": res["num_skipped_queries"],
                               "num_queries_absent": res["num_queries_absent"], "protocol": proto,
                               "mode": res["mode"], "metric": metric, "rerank": rerank, "rerank_params": params,
                               "seconds": round(seconds, 4)}))
        return
    _print_table(res, qpath, gpath, proto, metric, rerank, params, seconds, seconds, len(query), len(gallery))


def _print_table(res, qpath, gpath, proto, metric, rerank, params, rerank_s, seconds, n_q, n_g) -> None:
    from rich.table import Table

    cmc = res["cmc"]
    ranks = [r for r in (1, 5, 10, 20) if r <= len(cmc)]
    title = f"{Path(qpath).name} vs {Path(gpath).name}: {n_q} queries x {n_g} gallery"
    table = Table(title=title)
    for col in [f"R{r}" for r in ranks] + ["mAP", "mINP"]:
        table.add_column(col, justify="right")
    table.add_row(*[f"{100 * cmc[r - 1]:.2f}" for r in ranks], f"{100 * res['mAP']:.2f}", f"{100 * res['mINP']:.2f}")
    console.print(table)
    extra = ", ".join(f"{k}={v}" for k, v in params.items())
    console.print(f"protocol {proto}, metric {metric}, re-ranking {rerank}{f' ({extra})' if extra else ''}; "
                  f"{res['num_valid_queries']} valid queries, {res['num_skipped_queries']} skipped "
                  f"(no valid gallery match); {seconds:.2f} s" + (f" ({rerank_s:.2f} s re-ranking)" if rerank != "none" else ""),
                  highlight=False)
    if "tpr@fpr" in res:
        console.print("TPR@FPR: " + ", ".join(f"{f:g}: {100 * v:.2f}%" for f, v in res["tpr@fpr"].items()),
                      highlight=False)


def _unlabelled_advice(query, gallery, qpath, gpath) -> str | None:
    """What to do when a feature file has no identity labels at all (metrics need them)."""
    unlabelled = [str(p) for p, fs in ((qpath, query), (gpath, gallery)) if len(fs) and (fs.pids < 0).all()]
    if not unlabelled:
        return None
    return (f"{' and '.join(unlabelled)} carry no identity labels (every pid is -1), so nothing can be scored "
            "under any protocol; extract labelled features from a dataset split (reidkit extract --data ROOT "
            "--format F --split query|gallery) instead of a plain image folder (--images)")


def _warn_unmatched(res, query, gallery, qpath, gpath, proto) -> None:
    """When most queries have no valid match, say why and what to do, for the protocol in use."""
    if not res["num_skipped_queries"] or res["num_valid_queries"] >= res["num_skipped_queries"]:
        return
    advice = _unlabelled_advice(query, gallery, qpath, gpath)
    if advice:
        pass
    elif proto == "no-camera":
        advice = ("most queries have no gallery image of their identity; check that the query and gallery "
                  "files come from the same dataset (same pids)")
    else:
        advice = (f"most queries have no gallery match from another camera under the {proto} protocol; "
                  "check the camera ids, or use --protocol no-camera when they are unknown")
    err_console.print(f"[yellow]warning:[/] {advice}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command(name="eval")(eval_command)
