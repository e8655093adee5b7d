"""bench/gpu_suite.py in its tiny CPU mode: every row runs (no timing asserts)."""
import importlib.util
import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[1] / "bench" / "gpu_suite.py"


@pytest.mark.slow
def test_tiny_cpu_suite_runs_every_row(capsys):
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = mod   # its worker pool pickles functions by module name
    spec.loader.exec_module(mod)
    suite = mod.main(["--device", "cpu", "--tiny", "--budget", "1e9"])
    stages = {r[0] for r in suite.rows}
    assert {"fine-tune", "loader", "DINO", "extract", "k-NN attn"} <= stages
    errors = [r for r in suite.rows if str(r[1]).startswith(("error", "skipped"))]
    assert not errors, errors
    assert all(r[2] > 0 for r in suite.rows if r[2] is not None)
    assert "issue 12 GPU suite" in capsys.readouterr().out
