"""Make the shared fake-tracklet builders (``clip_fakes.py``) importable by the video tests.

pytest runs with ``--import-mode=importlib``, which does not put test folders on ``sys.path``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
