"""``run_recipe``: the recipe + overrides + --out resolution, --print-config, --resume and the NaN exit
that ``reidkit train``, ``pretrain`` and ``adapt`` share."""
from dataclasses import dataclass, field

import pytest
import typer
import yaml

from reidkit.cli.common import run_recipe
from reidkit.utils.checkpoint import NonFiniteLossError


@dataclass
class Solver:
    lr: float = 0.1
    epochs: int = 3


@dataclass
class Recipe:
    solver: Solver = field(default_factory=Solver)
    output: str = "runs/x"


def test_overrides_and_out_reach_the_run(tmp_path):
    (tmp_path / "r.yaml").write_text("solver:\n  epochs: 7\n")
    seen = {}

    def run(cfg, resume):
        seen.update(cfg=cfg, resume=resume)
        return tmp_path / "done"

    got = run_recipe(Recipe, run, tmp_path / "r.yaml", ["solver.lr=0.5"], out=tmp_path / "o", out_key="output",
                     resume=True, print_config=False, what="testing")
    assert got == tmp_path / "done" and seen["resume"] is True
    assert seen["cfg"] == Recipe(Solver(lr=0.5, epochs=7), output=str(tmp_path / "o"))


def test_print_config_prints_the_resolved_yaml_and_does_not_run(tmp_path, capsys):
    def run(cfg, resume):
        raise AssertionError("must not run")

    assert run_recipe(Recipe, run, None, ["solver.epochs=9"], out=None, out_key="output", resume=False,
                      print_config=True, what="testing") is None
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == {"solver": {"lr": 0.1, "epochs": 9}, "output": "runs/x"}


def test_a_nan_loss_exits_with_code_3_and_says_what_stopped(capsys):
    def run(cfg, resume):
        raise NonFiniteLossError("loss became nan at epoch 2")

    with pytest.raises(typer.Exit) as e:
        run_recipe(Recipe, run, None, [], out=None, out_key="output", resume=False, print_config=False,
                   what="testing")
    assert e.value.exit_code == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "testing stopped: loss became nan at epoch 2" in err


def test_a_full_disk_is_one_clean_line_not_a_traceback(tmp_path, capsys):
    """issue 16 item 13: the command ends with 'no space left on device: <path> (<free> free, <needed> needed)'."""
    from reidkit.cli.common import user_errors
    from reidkit.utils.io import DiskFullError

    with pytest.raises(typer.Exit) as e:
        with user_errors():
            raise DiskFullError(tmp_path / "last.pt", needed=3 * 2**30)
    assert e.value.exit_code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: no space left on device: {tmp_path / 'last.pt'} (" in err and "free, 3.0 GB needed)" in err
    assert "Traceback" not in err
