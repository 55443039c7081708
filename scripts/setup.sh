#!/usr/bin/env bash
# Create .venv and install exactly what CI tested: the packages of
# requirements/dev.lock (serving set + train and dev extras, exact versions,
# checked by hash), then the project itself without resolving anything.
# Idempotent: reinstalls only when the lock file or pyproject.toml changed.
# torch is pinned in the lock to the local CPU build (2.13.0+cpu) by its hash,
# so nothing can pull the gigabytes of CUDA wheels. Relock with
# `python scripts/lock.py` after changing a dependency in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LOCK=${VECTOROS_LOCK:-requirements/dev.lock}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.vectoros-installed"
want="$(cat pyproject.toml "$LOCK" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --require-hashes --no-deps -r "$LOCK"
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
  .venv/bin/python -m pip check
  echo "$want" > "$stamp"
fi
# The Python client (clients/python, its own distribution), editable, with no
# dependency of its own beyond what the lock already installed (pip check says so).
client_stamp=".venv/.vectoros-client-installed"
client_want="$(cat clients/python/pyproject.toml "$LOCK" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$client_stamp" 2>/dev/null)" != "$client_want" ]; then
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e clients/python
  .venv/bin/python -m pip check
  echo "$client_want" > "$client_stamp"
fi
