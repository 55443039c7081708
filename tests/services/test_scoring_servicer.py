"""ScoringService's translation over a real channel, fast: a fake scorer (no model)
behind the real ScoringEngine and interceptor. The real scorer is served in
test_scoring_service.py and test_scoring_similarity.py."""

from __future__ import annotations

import grpc
import pytest
from grpc_status import rpc_status

from server.engines.scoring import INLINE_DEALS
from server.models.registry import canary_bucket
from tests.support.fakes import FakeScorer, FixedRegistry
from tests.support.servers import scoring_stub
from vectoros.v1 import common_pb2, scoring_pb2


def registry_with(*offsets: float) -> FixedRegistry:
    registry = FixedRegistry()
    for version, offset in enumerate(offsets, start=1):
        registry.add("scorer", version, FakeScorer(offset), production=version == 1)
    return registry


def deal(i: int, value: float = 50_000.0, probability: float | None = 0.6) -> common_pb2.Deal:
    message = common_pb2.Deal(id=f"deal-{i}", value=value, contact_count=i % 4)
    if probability is not None:
        message.probability = probability
    return message


async def test_a_score_carries_everything_the_engine_computed_and_its_version():
    registry = registry_with(0.0)
    async with scoring_stub(registry) as stub:
        response = await stub.ScoreDeal(scoring_pb2.ScoreDealRequest(deal=deal(3), top_factors=2))
    (expected,) = FakeScorer(0.0).score([_record(deal(3))], 2)
    score = response.score
    assert score.deal_id == "deal-3" and score.win_probability == pytest.approx(expected.win_probability)
    assert [f.feature for f in score.top_factors] == [f.feature for f in expected.top_factors]
    assert [f.value for f in score.top_factors] == [f.value_text for f in expected.top_factors]
    assert score.margin == pytest.approx(expected.margin) and score.bias == 0.0
    assert (score.model.name, score.model.version) == ("scorer", 1)
    assert score.risk_level == {"low": scoring_pb2.RISK_LEVEL_LOW, "medium": scoring_pb2.RISK_LEVEL_MEDIUM,
                                "high": scoring_pb2.RISK_LEVEL_HIGH}[expected.risk_level]


def _record(message):
    from vectoros.core.deal_codec.proto import deal_from_proto

    return deal_from_proto(message, "deal")


@pytest.mark.parametrize("count", [6, INLINE_DEALS + 5])
async def test_a_batch_keeps_order_and_each_deal_gets_the_version_it_gets_alone(count):
    registry = registry_with(0.0, 1.5)
    registry.canary["scorer"] = (2, 50.0)
    deals = [deal(i, value=1000.0 * (i + 1)) for i in range(count)]
    async with scoring_stub(registry) as stub:
        batch = await stub.ScoreDeals(scoring_pb2.ScoreDealsRequest(deals=deals))
        alone = [(await stub.ScoreDeal(scoring_pb2.ScoreDealRequest(deal=d))).score for d in deals]
    assert [s.deal_id for s in batch.scores] == [d.id for d in deals]
    for score, single, message in zip(batch.scores, alone, deals, strict=True):
        expected_version = 2 if canary_bucket(message.id) < 5000 else 1
        assert score.model.version == single.model.version == expected_version
        assert score.win_probability == single.win_probability
    assert {s.model.version for s in batch.scores} == {1, 2}  # both versions served in one batch


async def test_a_pinned_version_is_served_for_every_deal():
    registry = registry_with(0.0, 1.5)
    async with scoring_stub(registry) as stub:
        response = await stub.ScoreDeals(scoring_pb2.ScoreDealsRequest(deals=[deal(1), deal(2)], model_version=2))
    assert [s.model.version for s in response.scores] == [2, 2]


@pytest.mark.parametrize(
    ("request_message", "code", "field", "message"),
    [
        (scoring_pb2.ScoreDealRequest(deal=deal(1), top_factors=51), "INVALID_ARGUMENT", "top_factors",
         "top_factors: must be 0 to 50, got 51"),
        (scoring_pb2.ScoreDealRequest(), "INVALID_ARGUMENT", "deal", "deal: required"),
        (scoring_pb2.ScoreDealRequest(deal=deal(1, value=-5)), "INVALID_ARGUMENT", "deal.value",
         "deal.value: must be finite and >= 0, got -5.0"),
        (scoring_pb2.ScoreDealRequest(deal=deal(1, probability=1.5)), "INVALID_ARGUMENT", "deal.probability",
         "deal.probability: must be in [0, 1], got 1.5"),
        (scoring_pb2.ScoreDealRequest(deal=deal(1), model_version=-1), "INVALID_ARGUMENT", "model_version",
         "model_version: must be >= 0 (0 serves production)"),
        (scoring_pb2.ScoreDealsRequest(), "INVALID_ARGUMENT", "deals", "deals: must hold 1 to 1000 deals, got 0"),
        (scoring_pb2.ScoreDealsRequest(deals=[deal(i) for i in range(1001)]), "INVALID_ARGUMENT", "deals",
         "deals: must hold 1 to 1000 deals, got 1001"),
        (scoring_pb2.ScoreDealsRequest(deals=[deal(1), common_pb2.Deal(value=1.0)]), "INVALID_ARGUMENT",
         "deals[1].id", "deals[1].id: required"),
        (scoring_pb2.ScoreDealRequest(deal=deal(1), model_version=7), "NOT_FOUND", None, None),
    ],
)
async def test_bad_requests_are_refused_naming_the_field(request_message, code, field, message):
    registry = registry_with(0.0)
    async with scoring_stub(registry) as stub:
        call = stub.ScoreDeal if isinstance(request_message, scoring_pb2.ScoreDealRequest) else stub.ScoreDeals
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call(request_message)
    assert error.value.code().name == code
    if message is not None:
        assert error.value.details() == message
        status = rpc_status.from_call(error.value)
        assert status is not None and status.details  # a BadRequest detail names the field
    assert registry.versions[("scorer", 1)].calls == []  # nothing was scored


async def test_no_scorer_is_unavailable():
    async with scoring_stub(FixedRegistry()) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.ScoreDeal(scoring_pb2.ScoreDealRequest(deal=deal(1)))
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
