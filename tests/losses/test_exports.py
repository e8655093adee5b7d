"""``reidkit.losses`` re-exports every public loss of its modules, lazily."""
import ast
import importlib
import subprocess
import sys
from pathlib import Path

import reidkit.losses as losses

MODULES = ("triplet", "softmax", "center", "dino", "cluster_memory", "coke_config", "coke", "look_config", "look")


def _public_definitions(module: str) -> set[str]:
    """Top-level public classes and functions of a losses module, read from its source."""
    src = Path(losses.__file__).with_name(f"{module}.py").read_text()
    return {n.name for n in ast.parse(src).body
            if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and not n.name.startswith("_")}


def test_every_public_definition_is_exported_as_the_same_object():
    want = set().union(*(_public_definitions(m) for m in MODULES))
    assert set(losses.__all__) == want
    for module in MODULES:
        mod = importlib.import_module(f"reidkit.losses.{module}")
        for name in _public_definitions(module):
            assert getattr(losses, name) is getattr(mod, name), name


def test_from_import_and_unknown_names():
    from reidkit.losses import CenterLoss, ClusterMemory, DINOLoss, MarginSoftmax, TripletLoss  # noqa: F401
    from reidkit.losses import triplet  # submodules stay importable as before

    assert TripletLoss is triplet.TripletLoss and "DINOLoss" in dir(losses)
    try:
        losses.NoSuchLoss  # noqa: B018
    except AttributeError as e:
        assert "NoSuchLoss" in str(e)
    else:
        raise AssertionError("unknown names must raise AttributeError")


def test_importing_the_package_or_one_loss_stays_cheap():
    code = ("import sys, reidkit.losses; a = 'torch' in sys.modules; import reidkit.losses.center; "
            "print(a, sorted(m for m in sys.modules if m.startswith('reidkit.losses.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(None, 1)
    assert out[0] == "False"  # the package alone does not import torch
    assert out[1].strip() == "['reidkit.losses.center']"  # one loss does not import the others
