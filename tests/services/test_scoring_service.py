"""ScoringService over a real channel: synthetic deals -> train -> publish -> registry -> gRPC."""

from __future__ import annotations

import math

import grpc
import pytest
from google.protobuf import timestamp_pb2

from server.engines.scoring import load_scorer
from server.models.publish import publish
from server.models.registry import ModelRegistry
from server.models.repository import ModelRepository

# `tests/training` would shadow the `training` package (see tests/training/conftest.py).
from tests.support.servers import scoring_stub
from training.records import write_deals
from training.scorer import TrainConfig, train_scorer
from training.synth import DATE_COLUMNS, synth_deals
from vectoros.core.deal_codec.proto import deal_to_proto
from vectoros.core.manifest import Manifest
from vectoros.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)

FAST = TrainConfig(grid=({"max_depth": 4, "learning_rate": 0.1, "min_child_weight": 1},), max_trees=200,
                   progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scoring")
    records = synth_deals(1500, seed=31)
    data = write_deals(records, folder / "deals.csv", custom_dates=DATE_COLUMNS)
    result = train_scorer(data, folder / "artifact", FAST)
    models = folder / "models"
    assert publish(result.out_dir, models).version == 1
    return models, result, records


@pytest.fixture(scope="module")
def registry(trained):
    models, _, _ = trained
    registry = ModelRegistry(models, {"scorer": load_scorer})
    registry.refresh(notify=False)
    return registry


async def test_score_deal_end_to_end(registry, trained):
    _, result, records = trained
    deal = deal_to_proto(records[5])
    async with scoring_stub(registry) as stub:
        response = await stub.ScoreDeal(scoring_pb2.ScoreDealRequest(deal=deal, top_factors=50))
        default = await stub.ScoreDeal(scoring_pb2.ScoreDealRequest(deal=deal))
    score = response.score
    assert score.deal_id == records[5].deal_id
    assert score.model == common_pb2.ModelRef(name="scorer", version=1)
    assert 0.0 <= score.win_probability <= 1.0
    assert score.risk_level != scoring_pb2.RISK_LEVEL_UNSPECIFIED
    # All factors were asked for: they add up to the margin.
    assert len(score.top_factors) == len(result.spec.features)
    assert score.bias + sum(f.contribution for f in score.top_factors) == pytest.approx(score.margin, abs=1e-6)
    sizes = [abs(f.contribution) for f in score.top_factors]
    assert sizes == sorted(sizes, reverse=True)
    assert len(default.score.top_factors) == 5
    assert [f.feature for f in default.score.top_factors] == [f.feature for f in score.top_factors[:5]]
    by_name = {f.feature: f.value for f in score.top_factors}
    assert by_name["industry"] == records[5].industry


async def test_a_deal_with_missing_optional_fields_scores(registry):
    async with scoring_stub(registry) as stub:
        response = await stub.ScoreDeal(
            scoring_pb2.ScoreDealRequest(deal=common_pb2.Deal(id="bare-1", value=25000.0))
        )
    assert 0.0 < response.score.win_probability < 1.0
    assert response.score.model.version == 1


async def test_batch_matches_single_and_keeps_order(registry, trained):
    _, _, records = trained
    deals = [deal_to_proto(r) for r in records[:300]]
    async with scoring_stub(registry) as stub:
        batch = await stub.ScoreDeals(scoring_pb2.ScoreDealsRequest(deals=deals, top_factors=3))
        singles = [await stub.ScoreDeal(scoring_pb2.ScoreDealRequest(deal=d, top_factors=3)) for d in deals[:20]]
    assert [s.deal_id for s in batch.scores] == [d.id for d in deals]
    assert all(len(s.top_factors) == 3 and s.model.version == 1 for s in batch.scores)
    for one, many in zip(singles, batch.scores[:20], strict=True):
        # The snapshot time (now) differs by milliseconds between calls.
        assert one.score.win_probability == pytest.approx(many.win_probability, abs=1e-3)
        assert one.score.top_factors[0].feature == many.top_factors[0].feature


def _bad(deal: common_pb2.Deal, **changes) -> common_pb2.Deal:
    copy = common_pb2.Deal()
    copy.CopyFrom(deal)
    for name, value in changes.items():
        if isinstance(value, dict):
            getattr(copy, name).update(value)
        else:
            setattr(copy, name, value)
    return copy


async def test_bad_input_names_the_field(registry):
    good = common_pb2.Deal(id="d1", value=100.0)
    cases = [
        (scoring_pb2.ScoreDealRequest(), "deal: required"),
        (scoring_pb2.ScoreDealRequest(deal=_bad(good, id="")), "deal.id: required"),
        (scoring_pb2.ScoreDealRequest(deal=_bad(good, value=math.nan)), "deal.value: must be finite"),
        (scoring_pb2.ScoreDealRequest(deal=_bad(good, value=-1.0)), "deal.value: must be finite and >= 0"),
        (scoring_pb2.ScoreDealRequest(deal=_bad(good, probability=1.5)), "deal.probability: must be in [0, 1]"),
        (scoring_pb2.ScoreDealRequest(deal=_bad(good, outcome=9)), "deal.outcome: unknown outcome"),
        (scoring_pb2.ScoreDealRequest(deal=_bad(good, numeric_attributes={"seats": math.inf})),
         "deal.numeric_attributes['seats']: must be finite"),
        (scoring_pb2.ScoreDealRequest(deal=good, top_factors=51), "top_factors: must be 0 to 50"),
        (scoring_pb2.ScoreDealRequest(deal=good, model_version=-1), "model_version: must be >= 0"),
    ]
    async with scoring_stub(registry) as stub:
        for request, message in cases:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.ScoreDeal(request)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, message
            assert raised.value.details().startswith(message)

        batch_cases = [
            (scoring_pb2.ScoreDealsRequest(), "deals: must hold 1 to 1000 deals, got 0"),
            (scoring_pb2.ScoreDealsRequest(deals=[good] * 1001), "deals: must hold 1 to 1000 deals, got 1001"),
            (scoring_pb2.ScoreDealsRequest(deals=[good, good, good, _bad(good, value=math.inf)]),
             "deals[3].value: must be finite"),
        ]
        for request, message in batch_cases:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.ScoreDeals(request)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert raised.value.details().startswith(message)

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ScoreDeal(scoring_pb2.ScoreDealRequest(deal=good, model_version=99))
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert raised.value.details().startswith("model_version:")


async def test_model_info(registry, trained):
    _, result, _ = trained
    manifest = Manifest.load(result.out_dir)
    async with scoring_stub(registry) as stub:
        response = await stub.GetModelInfo(scoring_pb2.ScoringServiceGetModelInfoRequest())
        pinned = await stub.GetModelInfo(scoring_pb2.ScoringServiceGetModelInfoRequest(model_version=1))
    info = response.info
    assert info.model == common_pb2.ModelRef(name="scorer", version=1)
    assert info.kind == "scorer" and list(info.labels) == ["production"]
    assert list(info.features) == list(result.spec.features)
    assert info.metrics["roc_auc"] == pytest.approx(manifest.metrics["roc_auc"])
    assert info.training_data_sha256 == manifest.training_data["sha256"]
    expected_time = timestamp_pb2.Timestamp()
    expected_time.FromDatetime(manifest.created_time)
    assert info.created_time == expected_time
    assert (response.high_risk_below, response.low_risk_from) == (0.3, 0.6)
    assert pinned.info.model.version == 1


async def test_no_model_is_unavailable(tmp_path):
    empty = ModelRegistry(tmp_path / "models", {"scorer": load_scorer})
    empty.refresh(notify=False)
    async with scoring_stub(empty) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ScoreDeal(scoring_pb2.ScoreDealRequest(deal=common_pb2.Deal(id="x", value=1.0)))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_canary_routes_by_deal_id_in_batches_too(trained, tmp_path):
    models, result, records = trained
    root = tmp_path / "models"
    publish(result.out_dir, root)
    publish(result.out_dir, root, canary_percent=50)
    assert ModelRepository(root).labels("scorer").canary == 2
    registry = ModelRegistry(root, {"scorer": load_scorer})
    registry.refresh(notify=False)
    deals = [deal_to_proto(r) for r in records[:200]]
    async with scoring_stub(registry) as stub:
        batch = await stub.ScoreDeals(scoring_pb2.ScoreDealsRequest(deals=deals))
        singles = [await stub.ScoreDeal(scoring_pb2.ScoreDealRequest(deal=d)) for d in deals[:30]]
        pinned = await stub.ScoreDeals(scoring_pb2.ScoreDealsRequest(deals=deals, model_version=1))
    versions = [s.model.version for s in batch.scores]
    assert set(versions) == {1, 2}
    assert [s.score.model.version for s in singles] == versions[:30]
    assert {s.model.version for s in pinned.scores} == {1}


def test_real_server_process_scores(trained):
    """`vectoros serve` over the published repository, as a user runs it."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from tests.support.serverproc import start_server

    models, _, records = trained
    proc = start_server("--models", str(models), "--data-dir", str(models.parent / "data"))
    try:
        with proc.channel() as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            response = stub.ScoreDeal(scoring_pb2.ScoreDealRequest(deal=deal_to_proto(records[0])), timeout=10)
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="vectoros.v1.ScoringService"), timeout=10
            )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert response.score.model == common_pb2.ModelRef(name="scorer", version=1)
        assert 0.0 <= response.score.win_probability <= 1.0
    finally:
        assert proc.terminate() == 0
