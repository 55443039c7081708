"""Re-embedding stored deals for a new embedder version: the engine's `reindex`
over both stores, resuming after an interruption (`vectoros reindex` itself is
tested in tests/cli/test_reindex.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from server.engines.similarity import Query, SimilarityEngine, reindex
from server.stores.base import RECORD
from server.stores.edge import EdgeStore
from server.stores.remote import RemoteStore
from tests.support.fakes import Embedders, HashEmbedder
from vectoros.core.deal_codec.payload import record_from_json
from vectoros.core.deal_text import deal_to_text
from vectoros.core.deals import DealRecord, Outcome
from vectoros.core.errors import FailedPrecondition

DIM = 16


def deals(count: int) -> list[DealRecord]:
    return [
        DealRecord(deal_id=f"d{i}", name=f"Deal {i}", notes=f"notes {i}", outcome=(Outcome.WON, Outcome.LOST)[i % 2])
        for i in range(count)
    ]


@pytest.fixture(params=["edge", "remote"])
def store(request, tmp_path):
    made = EdgeStore(tmp_path / "vectors") if request.param == "edge" else RemoteStore.in_memory()
    yield made
    made.close()


async def _fill(store, v1, count=50):
    engine = SimilarityEngine(store, Embedders(v1))
    engine.open()
    await engine.upsert("acme", deals(count))
    await engine.upsert("globex", deals(count // 2))
    engine.close()


async def test_reindex_re_embeds_everything_and_completes_last(store):
    v1, v2 = HashEmbedder(1, DIM), HashEmbedder(2, DIM)
    await _fill(store, v1)
    seen = []

    def progress(done, total):
        seen.append((done, total))
        if isinstance(store, RemoteStore):  # the Edge source is locked while it is read
            engine = SimilarityEngine(store, Embedders(v1, v2))
            engine.open()
            assert engine.serving()[1].version == 1  # v2 is not complete yet
            engine.close()

    result = reindex(store, 2, DIM, v2.embed_sync, batch_size=20, progress=progress)
    assert (result.source, result.target, result.embedded, result.total) == ("embedder-v1", "embedder-v2", 75, 75)
    assert seen[-1] == (75, 75) and len(seen) == 4
    assert {c.name: c.complete for c in store.list_collections()} == {"embedder-v1": True, "embedder-v2": True}

    engine = SimilarityEngine(store, Embedders(v1, v2))
    engine.open()
    assert engine.serving()[1].version == 2
    found = await engine.find("acme", Query(deal_id="d3"), top_k=100)
    assert found.embedder.version == 2 and len(found.matches) == 49
    expected = sorted(
        (d for d in deals(50) if d.deal_id != "d3"),
        key=lambda d: -float(v2.vector(deal_to_text(d)) @ v2.vector(deal_to_text(deals(50)[3]))),
    )
    assert [m.deal.deal_id for m in found.matches] == [d.deal_id for d in expected]
    assert found.matches[0].deal == replace(expected[0], workspace_id="acme")
    assert (await engine.stats("globex")).total == 25
    engine.close()

    again = reindex(store, 2, DIM, v2.embed_sync)
    assert again.embedded == 0 and again.total == 75


async def test_an_interrupted_reindex_resumes(tmp_path):
    store = EdgeStore(tmp_path)
    v1, v2 = HashEmbedder(1, DIM), HashEmbedder(2, DIM)
    await _fill(store, v1)

    def stop_after_two_batches(done, total):
        if done >= 40:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reindex(store, 2, DIM, v2.embed_sync, batch_size=20, progress=stop_after_two_batches)
    assert {c.name: c.complete for c in store.list_collections()} == {"embedder-v1": True, "embedder-v2": False}
    engine = SimilarityEngine(store, Embedders(v1, v2))
    engine.open()
    assert engine.serving()[1].version == 1
    engine.close()

    v2.embedded.clear()
    result = reindex(store, 2, DIM, v2.embed_sync, batch_size=20)
    assert (result.embedded, result.total) == (35, 75)
    collection = store.open_collection("embedder-v2")
    page, _ = collection.scroll(limit=100, with_vectors=True)
    for point in page:
        record = record_from_json(point.payload[RECORD])
        np.testing.assert_allclose(point.vector, v2.vector(deal_to_text(record)), atol=1e-6)
    collection.close()


async def test_reindex_refuses_a_dimension_mismatch(tmp_path):
    store = EdgeStore(tmp_path)
    store.create_collection("embedder", 2, DIM + 1).close()
    with pytest.raises(FailedPrecondition, match="dimensional"):
        reindex(store, 2, DIM, HashEmbedder(2, DIM).embed_sync)
