import sys
from pathlib import Path

# tests/conftest.py puts `tests/` on sys.path, where this folder shadows the
# `training` package as a namespace package unless the repository root comes
# first. (`pythonpath = ["."]` in pytest's configuration would make this moot.)
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
