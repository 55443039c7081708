"""A scorer trained with similarity features, served by ScoringServicer with a real
SimilarityEngine over the real Qdrant Edge store and the real ONNX embedder: a
stored deal gets the features training would compute for the same neighbours, a
deal that is not stored gets NaN and still scores."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from server.engines.neighbours import SimilarNeighbours
from server.engines.scoring import load_scorer
from server.engines.similarity import RegistryEmbedders, SimilarityEngine
from server.models.publish import publish
from server.models.registry import ModelRegistry
from server.services.scoring import ScoringServicer
from server.stores import open_store

# `tests/training` would shadow the `training` package (see tests/training/conftest.py).
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
    got = await neighbours.features([known, unknown], loaded.model.similarity)
    expected = _expected(registry, known, stored)
    assert np.isfinite(expected).all()
    np.testing.assert_allclose(got[0], expected, atol=1e-4)
    assert np.isnan(got[1]).all()

    servicer = ScoringServicer(registry, similarity=engine)
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
    plain = await ScoringServicer(registry).ScoreDeal(
        scoring_pb2.ScoreDealRequest(deal=deal_to_proto(known), top_factors=50), None
    )
    assert _factors(plain.score)["similar_mean_score"] == "missing"
    assert 0.0 < plain.score.win_probability < 1.0


async def test_another_embedder_than_the_trained_one_gives_nan(served):
    registry, engine, records = served
    await _stored(engine, records[:200])
    similarity = replace(registry.select("scorer").model.similarity, embedder_fingerprint="0" * 64)
    got = await SimilarNeighbours(engine, registry).features(records[:3], similarity)
    assert np.isnan(got).all()
    # The deal's workspace decides where to look: another workspace has nothing.
    other = await SimilarNeighbours(engine, registry).features(
        [replace(records[0], workspace_id="elsewhere")], registry.select("scorer").model.similarity
    )
    assert all(math.isnan(v) for v in other[0])
