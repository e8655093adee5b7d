"""Report pieces: plots, protocol-following ranked lists (pixel-checked borders), the HTML page."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidkit.evaluation.featurefile import FeatureSet
from reidkit.report import (plot_cmc, plot_training_curves, protocol_ranking, ranked_list_image, read_log,
                            save_ranked_lists, write_html_report)
from reidkit.report.ranked_lists import BLUE, GREEN, RED


def _png_ok(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_cmc_plot(tmp_path):
    p = plot_cmc({"model": np.linspace(0.5, 1, 50), "baseline": np.linspace(0.1, 0.6, 50)}, tmp_path / "c.png")
    w, h = _png_ok(p)
    assert w > 300 and h > 200
    with pytest.raises(ValueError, match="no CMC"):
        plot_cmc({}, tmp_path / "e.png")


def test_training_curves_from_a_log_with_sparse_eval(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("step,loss,id_loss,lr,images_per_s,mAP,R1\n"
                   "1,5.0,4.0,0.0001,100,,\n2,4.0,3.1,0.0002,110,20.5,30.0\n3,3.5,2.8,0.0003,105,,\n"
                   "4,3.0,2.2,0.0004,120,35.0,50.0\n")
    cols = read_log(log)
    np.testing.assert_array_equal(cols["step"], [1, 2, 3, 4])
    assert np.isnan(cols["mAP"][0]) and cols["mAP"][3] == 35.0
    _png_ok(plot_training_curves(log, tmp_path / "curves.png"))
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        plot_training_curves(tmp_path / "missing.csv", tmp_path / "x.png")
    bad = tmp_path / "bad.csv"
    bad.write_text("step,name\n1,a\n")
    with pytest.raises(ValueError, match="bad.csv"):
        plot_training_curves(bad, tmp_path / "x.png")


def _brute_ranking(d, qp, qc, gp, gc, k):
    cands = [(d[j], j) for j in range(len(gp)) if gp[j] != -1 and not (gp[j] == qp and gc[j] == qc)]
    return [j for _, j in sorted(cands)[:k]]


def test_protocol_ranking_matches_brute_force_with_ties_junk_and_same_camera():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(5, 40))
        d = rng.integers(0, 5, n).astype(np.float32)  # many ties
        gp = rng.integers(-1, 4, n)
        gc = rng.integers(0, 3, n)
        qp, qc = int(rng.integers(0, 4)), int(rng.integers(0, 3))
        got = protocol_ranking(d, qp, qc, gp, gc, topk=10)
        assert list(got) == _brute_ranking(d, qp, qc, gp, gc, 10)


def _write(path: Path, color) -> str:
    Image.new("RGB", (32, 64), color).save(path)
    return str(path)


def test_ranked_list_borders_and_size(tmp_path):
    q = _write(tmp_path / "q.png", (200, 200, 200))
    g = [_write(tmp_path / f"g{i}.png", (100, 100, 100)) for i in range(3)]
    img = ranked_list_image(q, 5, 0, g, [5, 7, 5], [1, 2, 3], size=(64, 32), gap=10)
    tile_w, pad = 32 + 6, 3
    assert img.size == (4 * tile_w + 10, 64 + 6 + 12)
    px = img.load()
    assert px[1, 1] == BLUE
    assert px[tile_w + 10 + 1, 1] == GREEN          # rank 1: same id
    assert px[2 * tile_w + 10 + 1, 1] == RED        # rank 2: another id
    assert px[3 * tile_w + 10 + 1, 1] == GREEN
    assert px[tile_w + 10 + pad + 5, pad + 5] == (100, 100, 100)  # the image itself inside the border


def test_save_ranked_lists_and_html_page(tmp_path):
    paths = [_write(tmp_path / f"{i}.png", (i * 20, 50, 90)) for i in range(8)]
    q = FeatureSet(np.eye(2, 4), [1, 2], [0, 0], paths[:2])
    g = FeatureSet(np.eye(6, 4), [1, 1, 2, -1, 0, 2], [0, 1, 1, 0, 2, 0], paths[2:])
    d = np.random.default_rng(0).random((2, 6))
    report = tmp_path / "report"
    written = save_ranked_lists(d, q, g, report / "ranked", num_queries=5, topk=3)
    assert len(written) == 2 and all(_png_ok(p) for p in written)
    cmc = plot_cmc({"m": np.ones(5)}, report / "cmc.png")
    page = write_html_report(report, title="demo <run>", results=[{"model": "a&b", "mAP": 12.345}],
                             figures=[("CMC", cmc)], ranked_lists=written, notes=["seed 0"])
    text = page.read_text()
    assert "demo &lt;run&gt;" in text and "a&amp;b" in text and "12.3" in text
    links = re.findall(r"src='([^']+)'", text)
    assert len(links) == 3 and all(not Path(l).is_absolute() and (report / l).is_file() for l in links)
    with pytest.raises(ValueError, match="inside the report folder"):
        write_html_report(report, title="t", results=[], figures=[("x", paths[0])])
