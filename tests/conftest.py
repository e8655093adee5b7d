"""Make the shared test helpers of this folder (``cli_processes.py``) importable from every test folder.

pytest runs with ``--import-mode=importlib``, which does not put test folders on ``sys.path``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
