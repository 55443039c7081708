#!/usr/bin/env bash
# Create .venv and install the project with its training and dev extras.
# Idempotent: reinstalls only when pyproject.toml changed since the last run.
# torch==2.13.0 goes first: it resolves to the local CPU build, whereas letting
# sentence-transformers pull "torch" would download gigabytes of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.vectoros-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[train,dev]"
  echo "$want" > "$stamp"
fi
