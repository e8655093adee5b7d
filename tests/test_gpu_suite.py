"""bench/gpu_suite.py: --smoke runs every row on CPU (no timing asserts), writes its table, and the time
budget skips or stops rows."""
import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[1] / "bench" / "gpu_suite.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = mod   # its worker pool pickles functions by module name
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_smoke_runs_every_row_and_writes_the_table(capsys, tmp_path):
    import torch

    threads = torch.get_num_threads()
    try:
        suite = _module().main(["--smoke", "--budget", "1e9", "--out", str(tmp_path / "suite.md")])
    finally:
        torch.set_num_threads(threads)
    stages = {r[0] for r in suite.rows}
    assert {"fine-tune", "loader", "DINO", "extract", "k-NN attn", "pretrain", "rerank", "cluster"} <= stages
    errors = [r for r in suite.rows if str(r[1]).startswith(("error", "skipped", "stopped"))]
    assert not errors, errors
    assert all(r[2] > 0 for r in suite.rows if r[2] is not None)
    assert any("compiled" in str(r[1]) for r in suite.rows)     # the compile rows ran (aot_eager)
    assert "issue 12 GPU suite" in capsys.readouterr().out
    table = json.loads((tmp_path / "suite.json").read_text())
    assert len(table["rows"]) == len(suite.rows) and table["title"].startswith("issue 12 GPU suite")
    md = (tmp_path / "suite.md").read_text().splitlines()
    assert md[2].startswith("| stage | what |") and len(md) == 4 + len(suite.rows)


def test_budget_skips_rows_that_do_not_fit_and_stops_one_that_overruns(tmp_path):
    mod = _module()
    args = argparse.Namespace(device="cpu", tiny=True, smoke=True, no_compile=True, workers=0, budget=1.5,
                              out=str(tmp_path / "t.md"))
    suite = mod.Suite(args)
    ran = []
    suite.run("quick", lambda: ran.append(1))
    suite.run("long", lambda: time.sleep(30))          # stopped at the budget, not after 30 s
    suite.run("late", lambda: ran.append(2), minimum=60)
    assert ran == [1] and time.perf_counter() - suite.t0 < 10
    assert [r[0] for r in suite.rows] == ["long", "late"]
    assert suite.rows[0][1].startswith("stopped") and suite.rows[1][1].startswith("skipped")
    assert json.loads((tmp_path / "t.json").read_text())["rows"][1]["what"].startswith("skipped")
