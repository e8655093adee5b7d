"""fast-reid 1.4.0's own evaluation and re-ranking code, fetched and built on demand for the benchmarks.

fast-reid pins torch==1.13.1, so it is never installed: its wheel is downloaded without dependencies
into ``.cache/peers/``, its single-file modules are imported by path (not through the package
``__init__``), and its Cython ranking code is compiled there with the Cython already in the venv.
Nothing of it is vendored into reidkit.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "peers"
WHEEL = "fastreid-1.4.0-py3-none-any.whl"
EVAL_DIR = CACHE / "fastreid_whl" / "fastreid" / "evaluation"


def fetch(download: bool = True) -> Path | None:
    """Path to fast-reid's ``evaluation/`` folder, downloading and unpacking the wheel if needed."""
    if not EVAL_DIR.is_dir():
        wheel = CACHE / WHEEL
        if not wheel.is_file():
            if not download:
                return None
            CACHE.mkdir(parents=True, exist_ok=True)
            cmds = [["uvx", "pip", "download", "--no-deps", "fastreid==1.4.0", "-d", str(CACHE)],
                    [sys.executable, "-m", "pip", "download", "--no-deps", "fastreid==1.4.0", "-d", str(CACHE)]]
            for cmd in cmds:
                if shutil.which(cmd[0]) or cmd[0] == sys.executable:
                    if subprocess.run(cmd, capture_output=True).returncode == 0:
                        break
            if not wheel.is_file():
                return None
        with zipfile.ZipFile(wheel) as z:
            z.extractall(CACHE / "fastreid_whl")
    return EVAL_DIR


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rank_py():
    """fast-reid's ``rank.py`` (pure-python ``evaluate_py``), or None when it cannot be fetched."""
    d = fetch()
    if d is None:
        return None
    import warnings
    with warnings.catch_warnings():  # it warns that its relative Cython import failed: expected here
        warnings.simplefilter("ignore")
        return load_module("fastreid_rank", d / "rank.py")


def rerank(download: bool = True):
    """fast-reid's classic dense ``rerank.py`` module (``re_ranking``), or None."""
    d = fetch(download)
    return None if d is None else load_module("fastreid_rerank", d / "rerank.py")


def rank_cy():
    """fast-reid's Cython ``rank_cy`` compiled into ``.cache/peers/build`` (once), or None."""
    d = fetch()
    if d is None:
        return None
    build = CACHE / "build"
    build.mkdir(parents=True, exist_ok=True)
    if not list(build.glob("rank_cy*.so")):
        import numpy as np
        from Cython.Build import cythonize
        from setuptools import Distribution, Extension

        ext = Extension("rank_cy", [str(d / "rank_cylib" / "rank_cy.pyx")], include_dirs=[np.get_include()],
                        extra_compile_args=["-O3"])
        dist = Distribution({"ext_modules": cythonize([ext], quiet=True, language_level=3,
                                                      build_dir=str(build / "c"))})
        cmd = dist.get_command_obj("build_ext")
        cmd.build_lib, cmd.build_temp = str(build), str(build / "tmp")
        dist.run_command("build_ext")
    so = next(build.glob("rank_cy*.so"))
    return load_module("rank_cy", so)
