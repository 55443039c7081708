#!/usr/bin/env bash
# Set up .venv, build the demo models and data (once), create a demo bearer
# token for workspace "demo" (once; printed at every start), and run the server
# on 127.0.0.1:50051 with the model repository ./models, state in ./data and
# authentication on. Extra arguments go to `vectoros serve` (e.g. --port 6000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/python scripts/build_demo.py --models ./models --data-dir ./data
tokens=./data/tokens.json
demo_token=./data/demo-token
if [ ! -s "$demo_token" ]; then
  # The tokens file keeps only the token's hash; the demo keeps the token itself
  # beside it (mode 0600) so that scripts/smoke.py can use it.
  (umask 077 && .venv/bin/vectoros tokens create --role writer --workspace demo --name demo \
    --tokens "$tokens" > "$demo_token")
fi
echo "demo token (writer, workspace demo): $(cat "$demo_token")"
echo "try it: .venv/bin/python scripts/smoke.py   (reads ./data/demo-token, or \$VECTOROS_TOKEN)"
exec .venv/bin/vectoros serve --models ./models --data-dir ./data --tokens-file "$tokens" "$@"
