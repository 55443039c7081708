#!/usr/bin/env bash
# Set up (if needed) and run every check: locks match pyproject.toml, stubs up
# to date, buf lint, buf breaking against the released API, ruff, pytest (which
# also installs and builds the TypeScript client with npm and runs its interop test).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/python scripts/lock.py --check
.venv/bin/python scripts/gen_stubs.py --check
(cd protos && ../.venv/bin/buf lint)
# The API must not break what the last release's clients were built for.
(cd protos && ../.venv/bin/buf breaking --against released/vectoros-v1.binpb)
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
