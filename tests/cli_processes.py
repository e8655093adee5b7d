"""Real ``reidkit`` processes for the kill-and-resume tests: quiet, one thread, outside torchrun."""
import csv
import os
import subprocess
import sys


def quiet_env() -> dict:
    env = dict(os.environ, REIDKIT_PROGRESS="0", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("WORLD_SIZE", None)
    return env


def start_reidkit(verb: str, cfg, *args) -> subprocess.Popen:
    """``python -m reidkit.cli.main VERB CFG ARGS...`` with stdout and stderr merged."""
    return subprocess.Popen([sys.executable, "-m", "reidkit.cli.main", verb, str(cfg), *args], env=quiet_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def csv_rows(path) -> list[dict]:
    """The rows of a run's log.csv ([] before the first one)."""
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))
