"""`reidkit datasets check` and `reidkit datasets formats` through the real CLI app."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from reidkit.cli.main import app

from data_fakes import market_name as mn
from data_fakes import market_tree, write_image

runner = CliRunner()


def market(tmp_path):
    return market_tree(tmp_path / "Market-1501-v15.09.15", train=[mn(1, 1), mn(1, 2), mn(3, 4)],
                       query=[mn(1, 3)], gallery=[mn(1, 5), mn(0, 6), mn(-1, 1)])


def test_check_prints_table_and_problems(tmp_path):
    base = market(tmp_path)
    write_image(base / "query" / "oops.jpg")
    (base / "bounding_box_train" / "0009_c1s1_000001_01.jpg").write_text("a text file named .jpg")
    r = runner.invoke(app, ["datasets", "check", str(tmp_path), "--format", "market1501"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    for expect in ("# ids", "# images", "# cameras", "train │ 3 │ 4 │ 3", "gallery │ 2 │ 2 │ 2",
                   "dropped 1 junk", "do not match", "'oops.jpg'"):
        assert expect in out, (expect, r.output)
    r = runner.invoke(app, ["datasets", "check", str(tmp_path), "--verify-images"])
    assert r.exit_code == 1
    out = " ".join(r.output.split())
    assert "1 corrupt image(s)" in out and "0009_c1s1_000001_01.jpg: not an image" in out


def test_check_json_and_bad_list(tmp_path):
    base = market(tmp_path)
    (base / "query" / "0001_c2s1_000009_01.jpg").write_bytes(b"\xff\xd8\xff")
    bad = tmp_path / "bad.txt"
    r = runner.invoke(app, ["datasets", "check", str(tmp_path), "--json", "--verify-images",
                            "--bad-list", str(bad)])
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert data["splits"]["train"] == {"ids": 2, "images": 3, "cameras": 3}
    assert data["splits"]["query"]["images"] == 2
    assert len(data["corrupt_images"]) == 1
    assert "not an image" in data["corrupt_images"][0]["problem"]   # a bare JPEG header
    assert bad.read_text().strip().endswith("0001_c2s1_000009_01.jpg")


def test_check_missing_split_exits_1_and_names_it(tmp_path):
    base = market(tmp_path)
    for f in (base / "query").iterdir():
        f.unlink()
    (base / "query").rmdir()
    r = runner.invoke(app, ["datasets", "check", str(tmp_path)])
    assert r.exit_code == 1
    assert "missing query folder" in " ".join(r.output.split())


def test_check_user_errors_and_options(tmp_path):
    r = runner.invoke(app, ["datasets", "check", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "does not exist" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["datasets", "check", str(tmp_path), "--format", "viper"])
    assert r.exit_code == 2 and "unknown dataset format" in r.output
    r = runner.invoke(app, ["datasets", "check", str(tmp_path), "-o", "novalue"])
    assert r.exit_code == 2 and "expected key=value" in r.output
    for i in range(4):
        write_image(tmp_path / "pool" / f"{i}.jpg", seed=i)
    r = runner.invoke(app, ["datasets", "check", str(tmp_path / "pool"), "-f", "unlabelled",
                            "-o", "keep_ratio=0.5", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["splits"]["train"]["images"] == 2


def test_formats_lists_every_reader():
    r = runner.invoke(app, ["datasets", "formats"])
    assert r.exit_code == 0
    for name in ("market1501", "dukemtmc", "msmt17", "cuhk03", "folder", "csv", "unlabelled", "mm"):
        assert name in r.output


def test_check_reports_dangling_symlinks(tmp_path):
    import os

    base = market(tmp_path)
    os.symlink(tmp_path / "moved_away.jpg", base / "query" / "0001_c4s1_000001_01.jpg")
    r = runner.invoke(app, ["datasets", "check", str(tmp_path), "--format", "market1501"])
    out = " ".join(r.output.split())
    assert "1 dangling symlink(s)" in out and "moved_away.jpg" in out, r.output
