"""A scorer trained with similarity features, served by ScoringServicer with a real
SimilarityEngine over the real Qdrant Edge store and the real ONNX embedder: a
stored deal gets the features training would compute for the same neighbours, a
deal that is not stored gets NaN and still scores."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from server.engines.scoring import ScoringEngine, SimilarNeighbours, load_scorer
from server.engines.similarity import RegistryEmbedders, SimilarityEngine
from server.models.publish import publish
from server.models.registry import ModelRegistry
from server.services.scoring import ScoringServicer
from server.stores import open_store
from training import embedder as embedder_export
from training.records import write_deals
from training.scorer import TrainConfig, train_scorer
from training.synth import DATE_COLUMNS, synth_deals
from vectoros.core.deal_codec.proto import deal_to_proto
from vectoros.core.deal_text import deal_to_text
from vectoros.core.deals import Outcome
from vectoros.core.embedder import load_embedder
from vectoros.core.similar_features import SIMILARITY_FEATURES, similarity_features
from vectoros.v1 import scoring_pb2

FAST = TrainConfig(grid=({"max_depth": 3, "learning_rate": 0.1, "min_child_weight": 1},), max_trees=200,
                   folds=3, progress=False)
WORKSPACE = "ws-synth"
K = 10


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scoring-similarity")
    records = synth_deals(500, seed=13)
    data = write_deals(records, folder / "deals.csv", custom_dates=DATE_COLUMNS)
    embedder_dir = embedder_export.cached_export()
    result = train_scorer(data, folder / "scorer", FAST, embedder=embedder_dir, similar_k=K)
    models = folder / "models"
    publish(result.out_dir, models)
    publish(embedder_dir, models)
    registry = ModelRegistry(models, {"scorer": load_scorer, "embedder": load_embedder})
    registry.refresh(notify=False)
    store = open_store(folder / "data")
    engine = SimilarityEngine(store, RegistryEmbedders(registry))
    engine.open()
    yield registry, engine, records
    engine.close()
    store.close()


async def _stored(engine, records):
    for start in range(0, len(records), 200):
        await engine.upsert(WORKSPACE, records[start : start + 200])


def _expected(registry, query, stored) -> np.ndarray:
    """The training-side computation over what the store holds: every stored closed
    deal is a neighbour (the store holds outcomes recorded up to now)."""
    embedder = registry.select("embedder").model
    closed = [r for r in stored if r.outcome is not Outcome.OPEN and r.deal_id != query.deal_id]
    vectors = embedder.embed([deal_to_text(query), *(deal_to_text(r) for r in closed)]).vectors
    return similarity_features(
        vectors[:1], vectors[1:], np.array([r.outcome is Outcome.WON for r in closed]),
        np.zeros(len(closed)), np.array([1.0]), K,
    )[0]


def _factors(response_score) -> dict[str, str]:
    return {f.feature: f.value for f in response_score.top_factors}


async def test_stored_deal_gets_the_training_features_and_a_new_deal_gets_nan(served):
    registry, engine, records = served
    # The store holds the older deals (closed and open) of the workspace; the
    # newest open deals are not stored.
    open_deals = [r for r in records if r.outcome is Outcome.OPEN]
    assert len(open_deals) >= 2
    stored = [r for r in records if r.deal_id != open_deals[-1].deal_id]
    await _stored(engine, stored)
    known, unknown = open_deals[0], open_deals[-1]

    loaded = registry.select("scorer")
    neighbours = SimilarNeighbours(engine, registry)
    got = neighbours.session().features([known, unknown], loaded.model.similarity)
    expected = _expected(registry, known, stored)
    assert np.isfinite(expected).all()
    np.testing.assert_allclose(got[0], expected, atol=1e-4)
    assert np.isnan(got[1]).all()

    servicer = ScoringServicer(ScoringEngine(registry, engine))
    spec = loaded.model.spec
    for record, similar in ((known, got[:1]), (unknown, np.full((1, 2), np.nan))):
        request = scoring_pb2.ScoreDealRequest(deal=deal_to_proto(record), top_factors=50)
        response = await servicer.ScoreDeal(request, None)
        # Every feature is among the 50 factors, with the value the model read.
        factors = _factors(response.score)
        assert len(factors) == spec.width
        for index, name in enumerate(SIMILARITY_FEATURES):
            assert factors[name] == spec.value_text(name, float(similar[0, index]))
        assert 0.0 < response.score.win_probability < 1.0
    assert _factors((await servicer.ScoreDeal(
        scoring_pb2.ScoreDealRequest(deal=deal_to_proto(unknown), top_factors=50), None)).score
    )["similar_win_rate"] == "missing"

    # In a batch, each deal scores as it does alone.
    batch = await servicer.ScoreDeals(
        scoring_pb2.ScoreDealsRequest(deals=[deal_to_proto(known), deal_to_proto(unknown)], top_factors=50), None
    )
    for record, score in zip((known, unknown), batch.scores, strict=True):
        alone = await servicer.ScoreDeal(scoring_pb2.ScoreDealRequest(deal=deal_to_proto(record), top_factors=50), None)
        assert score.margin == pytest.approx(alone.score.margin, abs=1e-6)
        assert _factors(score) == _factors(alone.score)

    # Without a similarity engine the features are missing and the deal still scores.
    plain = await ScoringServicer(ScoringEngine(registry)).ScoreDeal(
        scoring_pb2.ScoreDealRequest(deal=deal_to_proto(known), top_factors=50), None
    )
    assert _factors(plain.score)["similar_mean_score"] == "missing"
    assert 0.0 < plain.score.win_probability < 1.0


async def test_another_embedder_than_the_trained_one_gives_nan(served):
    registry, engine, records = served
    await _stored(engine, records[:200])
    similarity = replace(registry.select("scorer").model.similarity, embedder_fingerprint="0" * 64)
    got = SimilarNeighbours(engine, registry).session().features(records[:3], similarity)
    assert np.isnan(got).all()
    # The deal's workspace decides where to look: another workspace has nothing.
    other = SimilarNeighbours(engine, registry).session().features(
        [replace(records[0], workspace_id="elsewhere")], registry.select("scorer").model.similarity
    )
    assert all(math.isnan(v) for v in other[0])


async def test_every_rpc_gives_a_deal_the_same_probability(served, tmp_path):
    """ScoreDeal, ScoreDeals, GenerateInsights and ScanPipeline all score through
    the one ScoringEngine, similarity features included."""
    from server.engines.insight import HistoryIndex, InsightEngine
    from server.engines.insight.monitor import PipelineMonitor
    from server.engines.insight.rules import RulesGenerator
    from server.ledger import Ledger

    registry, engine, records = served
    await _stored(engine, records)
    known = next(r for r in records if r.outcome is Outcome.OPEN)
    scoring = ScoringEngine(registry, engine)
    servicer = ScoringServicer(scoring)
    alone = (await servicer.ScoreDeal(scoring_pb2.ScoreDealRequest(deal=deal_to_proto(known)), None)).score
    assert _factors((await servicer.ScoreDeal(
        scoring_pb2.ScoreDealRequest(deal=deal_to_proto(known), top_factors=50), None)).score
    )["similar_win_rate"] != "missing"
    batch = await servicer.ScoreDeals(scoring_pb2.ScoreDealsRequest(
        deals=[deal_to_proto(r) for r in records[:40] if r.deal_id != known.deal_id] + [deal_to_proto(known)]), None)
    ledger = Ledger.in_dir(tmp_path)
    history = HistoryIndex(engine)
    try:
        insights = InsightEngine(registry, engine, ledger, RulesGenerator(), history, scoring=scoring)
        # As of now, as the other RPCs score (a request's snapshot is its time).
        result = await insights.generate(replace(known, snapshot_at=None))
        insight_row = ledger.insight_set(WORKSPACE, result.insight_set_id)
        # A monitor built on its own gives the same answer as the shared engine.
        monitor = PipelineMonitor(registry, history, ledger, ScoringEngine(registry, engine))
        await monitor.scan(WORKSPACE, [replace(known, workspace_id="", snapshot_at=None)])
        scanned = ledger.scan_states(WORKSPACE, [known.deal_id])[known.deal_id]
    finally:
        ledger.close()
    probabilities = {
        "ScoreDeal": alone.win_probability,
        "ScoreDeals": batch.scores[-1].win_probability,
        "GenerateInsights": insight_row.model_win_probability,
        "ScanPipeline": scanned.win_probability,
    }
    for rpc, probability in probabilities.items():
        assert probability == pytest.approx(alone.win_probability, abs=1e-9), (rpc, probabilities)
    assert scanned.scorer_version == alone.model.version == result.scorer.version


async def test_a_health_check_is_answered_while_a_large_batch_looks_up_neighbours(served):
    """The neighbour lookups of a 1,000-deal ScoreDeals run in a worker thread, so
    the event loop keeps answering other calls (before, they ran on it)."""
    import asyncio

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from server.interceptors import RpcInterceptor
    from vectoros.v1 import scoring_pb2_grpc

    registry, engine, records = served
    await _stored(engine, records)
    stored = [r for r in records if r.outcome is Outcome.OPEN] + [r for r in records if r.outcome is not Outcome.OPEN]
    deals = [deal_to_proto(r) for r in (stored * 3)[:1000]]  # repeats look up the same stored deals again
    server = grpc.aio.server(interceptors=[RpcInterceptor()])
    scoring_pb2_grpc.add_ScoringServiceServicer_to_server(ScoringServicer(ScoringEngine(registry, engine)), server)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            scorer = scoring_pb2_grpc.ScoringServiceStub(channel)
            checks = health_pb2_grpc.HealthStub(channel)
            call = scorer.ScoreDeals(scoring_pb2.ScoreDealsRequest(deals=deals), timeout=120)
            batch = asyncio.ensure_future(call)
            answered = 0
            while not batch.done():
                await checks.Check(health_pb2.HealthCheckRequest(), timeout=30)
                if not batch.done():
                    answered += 1
            response = await batch
        assert len(response.scores) == 1000
        assert answered >= 1, "no health Check was answered while the batch was in flight"
    finally:
        await server.stop(None)
