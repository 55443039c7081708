#!/usr/bin/env bash
# Set up (if needed) and run every check: locks match pyproject.toml, stubs up
# to date, buf lint, ruff, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/python scripts/lock.py --check
.venv/bin/python scripts/gen_stubs.py --check
(cd protos && ../.venv/bin/buf lint)
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
