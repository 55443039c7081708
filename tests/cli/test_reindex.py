"""`vectoros reindex` with the real embedder artifact published twice: refused while
a collection is held open, then re-embeds, then has nothing to do, then drops
the old collection."""

from __future__ import annotations

import argparse

import pytest

from server.engines.similarity import Query, SimilarityEngine
from server.stores.edge import EdgeStore
from vectoros.core.deals import DealRecord, Outcome

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)


def deals(count: int) -> list[DealRecord]:
    return [
        DealRecord(deal_id=f"d{i}", name=f"Deal {i}", notes=f"notes {i}", outcome=(Outcome.WON, Outcome.LOST)[i % 2])
        for i in range(count)
    ]


def test_vectoros_reindex_with_the_real_embedder(tmp_path, capsys):
    import asyncio

    from server.engines.similarity import RegistryEmbedders
    from server.models.publish import publish
    from server.models.registry import ModelRegistry
    from training import embedder as embedder_export
    from vectoros.cli import reindex as reindex_cli
    from vectoros.core.embedder import load_embedder

    models, data_dir = tmp_path / "models", tmp_path / "data"
    artifact = embedder_export.cached_export()
    publish(artifact, models)
    registry = ModelRegistry(models, {"embedder": load_embedder})
    registry.refresh(notify=False)
    store = EdgeStore(data_dir / "vectors")
    engine = SimilarityEngine(store, RegistryEmbedders(registry))
    engine.open()
    asyncio.run(engine.upsert("acme", deals(20)))
    engine.close()
    publish(artifact, models, force=True)  # the same weights as version 2: a new collection all the same

    parser = argparse.ArgumentParser()
    reindex_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["reindex", "--data-dir", str(data_dir), "--models", str(models), "--quiet"])

    held = store.open_collection("embedder-v1")  # as a running server would
    assert args.func(args) == 1
    assert "open in another process" in capsys.readouterr().err
    held.close()

    assert args.func(args) == 0
    assert "embedder-v2: 20 deals from embedder-v1, 20 embedded" in capsys.readouterr().out
    assert args.func(args) == 0
    assert "nothing to do" in capsys.readouterr().out

    registry.refresh(notify=False)
    engine = SimilarityEngine(EdgeStore(data_dir / "vectors"), RegistryEmbedders(registry))
    engine.open()
    result = asyncio.run(engine.find("acme", Query(deal_id="d1"), top_k=3))
    assert result.embedder.version == 2 and len(result.matches) == 3
    engine.close()

    args = parser.parse_args(["reindex", "--data-dir", str(data_dir), "--models", str(models), "--quiet", "--drop-old"])
    assert args.func(args) == 0
    assert [c.name for c in EdgeStore(data_dir / "vectors").list_collections()] == ["embedder-v2"]
