"""A new production embedder while the store holds the old version's collection:
`vectoros serve` started without --reindex-on-start keeps searching the old
collection with the old embedder (loaded for that purpose) until a reindex
completes; with --reindex-on-start it moves to the new version by itself."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.engines.similarity import RegistryEmbedders, SimilarityEngine
from server.models.publish import publish
from server.models.registry import ModelRegistry
from server.stores.edge import EdgeStore
from tests.support.serverproc import start_server
from training.embedder import cached_export
from vectoros.core.deals import DealRecord, Outcome
from vectoros.core.embedder import load_embedder
from vectoros.v1 import similarity_pb2, similarity_pb2_grpc

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)


def deals(count: int) -> list[DealRecord]:
    return [
        DealRecord(deal_id=f"d{i}", name=f"Deal {i}", notes=f"renewal notes {i}",
                   outcome=(Outcome.WON, Outcome.LOST)[i % 2])
        for i in range(count)
    ]


@pytest.fixture
def upgraded(tmp_path):
    """Models with embedder versions 1 and 2 (production), and deals stored by version 1 only."""
    models, data_dir = tmp_path / "models", tmp_path / "data"
    artifact = cached_export()
    publish(artifact, models)
    registry = ModelRegistry(models, {"embedder": load_embedder})
    registry.refresh(notify=False)
    engine = SimilarityEngine(EdgeStore(data_dir / "vectors"), RegistryEmbedders(registry))
    engine.open()
    asyncio.run(engine.upsert("acme", deals(12)))
    engine.close()
    engine.store.close()
    publish(artifact, models, force=True)  # the same weights as version 2: a new collection all the same
    return models, data_dir


def _find(channel) -> similarity_pb2.FindSimilarDealsResponse:
    stub = similarity_pb2_grpc.SimilarityServiceStub(channel)
    return stub.FindSimilarDeals(
        similarity_pb2.FindSimilarDealsRequest(workspace_id="acme", text="renewal with procurement", top_k=3),
        timeout=30,
    )


def test_without_reindex_the_old_collection_keeps_serving_with_its_embedder(upgraded):
    models, data_dir = upgraded
    proc = start_server("--models", str(models), "--data-dir", str(data_dir), timeout=180)
    try:
        with proc.channel() as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="vectoros.v1.SimilarityService"), timeout=10
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            response = _find(channel)  # free text: needs the version-1 embedder itself
            assert response.embedder.version == 1
            assert len(response.matches) == 3
    finally:
        assert proc.terminate() == 0
    assert proc.wait_for_log(msg="keeping the embedder of the served collection loaded until a reindex completes")


def test_reindex_on_start_moves_to_the_new_version(upgraded):
    models, data_dir = upgraded
    proc = start_server("--models", str(models), "--data-dir", str(data_dir), "--reindex-on-start", timeout=180)
    try:
        with proc.channel() as channel:
            deadline = time.monotonic() + 120
            while True:
                try:
                    response = _find(channel)
                except grpc.RpcError as error:  # a search that raced the switch is told to retry
                    assert error.code() == grpc.StatusCode.UNAVAILABLE
                    response = None
                if response is not None and response.embedder.version == 2:
                    break
                assert time.monotonic() < deadline, "the server never moved to embedder version 2"
                time.sleep(0.5)
            assert len(response.matches) == 3
    finally:
        assert proc.terminate() == 0
