#!/usr/bin/env bash
# Set up .venv, build the demo models and data (once), and run the server on
# 127.0.0.1:50051 with the model repository ./models and state in ./data.
# Extra arguments go to `vectoros serve` (e.g. --port 6000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/python scripts/build_demo.py --models ./models --data-dir ./data
exec .venv/bin/vectoros serve --models ./models --data-dir ./data "$@"
