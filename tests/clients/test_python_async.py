"""`AsyncClient` against the real server: the same calls as `Client`, as
coroutines, with the same answers; the export as an async iterator."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import numpy as np
import pytest
from vectoros_client import (
    AsyncClient,
    Client,
    InvalidArgument,
    Outcome,
    PermissionDenied,
    SimulationOptions,
    Unimplemented,
)
from vectoros_client.v1 import scoring_pb2

from tests.clients.sample import QUARTER, history, open_pipeline

WORKSPACE = "py-async"
on_session_loop = pytest.mark.asyncio(loop_scope="session")


@on_session_loop
async def test_every_rpc_as_a_coroutine(served):
    deals = history("a")
    async with AsyncClient(served.address, token=served.writer) as client:
        await client.wait_until_serving("vectoros.v1.InsightService", timeout=60)
        embedded, info = await asyncio.gather(client.embed(["a text", "another"]), client.embedder_info())
        assert embedded.vectors.shape == (2, info.dimension) and embedded.vectors.dtype == np.float32
        assert (await client.embed_deals(deals[:3])).vectors.shape == (3, info.dimension)

        stored = await client.upsert_deals(WORKSPACE, deals)
        assert (stored.upserted, stored.unchanged) == (6, 0)
        similar = await client.find_similar_deals(WORKSPACE, deal_id="a1", top_k=3)
        assert len(similar.matches) == 3 and "a1" not in {m.deal.id for m in similar.matches}
        stats = await client.get_stats(WORKSPACE)
        assert stats.total_deals == 6 and stats.by_outcome[Outcome.OPEN] == 2

        pipeline = open_pipeline("ao")
        scores = await client.score_deals(pipeline)
        single = await client.score_deal(pipeline[0])
        assert single.win_probability == pytest.approx(scores[0].win_probability)
        assert (await client.scorer_info()).info.model == single.model

        options = SimulationOptions(seed=5, simulations=3_000)
        forecast = await client.forecast(pipeline, start=QUARTER[0], end=QUARTER[1], options=options)
        compared = await client.compare_scenarios(pipeline, [], start=QUARTER[0], end=QUARTER[1], options=options)
        assert compared.base.mean == pytest.approx(forecast.result.mean) and forecast.seed == 5

        deal = replace(pipeline[1], workspace_id=WORKSPACE)
        insights = await client.generate_insights(deal)
        feedback = await client.record_feedback(WORKSPACE, insights.insight_set_id, "not_helpful")
        assert not feedback.duplicate
        assert await client.record_outcome(WORKSPACE, deal.id, "lost") is False
        scan = await client.scan_pipeline(WORKSPACE)
        assert scan.scanned_deals >= 2  # the stored open deals
        lines = [line async for line in client.export_training_data(WORKSPACE, "labelled_examples")]
        assert insights.insight_set_id in {json.loads(line)["generated"]["insight_set_id"] for line in lines}
        assert await client.delete_deals(WORKSPACE, [d.id for d in deals]) == 6


@on_session_loop
async def test_async_and_blocking_clients_give_the_same_answers(served):
    pipeline = open_pipeline("same")
    options = SimulationOptions(seed=21, simulations=2_000)
    with Client(served.address, token=served.writer) as blocking:
        expected_scores = [s.win_probability for s in blocking.score_deals(pipeline)]
        expected_mean = blocking.forecast(pipeline, start=QUARTER[0], end=QUARTER[1], options=options).result.mean
    async with AsyncClient(served.address, token=served.writer) as client:
        scores = [s.win_probability for s in await client.score_deals(pipeline)]
        mean = (await client.forecast(pipeline, start=QUARTER[0], end=QUARTER[1], options=options)).result.mean
    assert scores == expected_scores and mean == expected_mean


@on_session_loop
async def test_async_errors_are_the_same_exceptions(served):
    async with AsyncClient(served.address, token=served.writer) as client:
        with pytest.raises(InvalidArgument) as invalid:
            await client.score_deals([])
        assert invalid.value.field == "deals"
        with pytest.raises(PermissionDenied) as refused:
            await client.get_stats("globex")
        assert refused.value.field == "workspace_id"
        with pytest.raises(Unimplemented):
            await client.call("/vectoros.v1.ScoringService/ExplainDeal", scoring_pb2.ScoreDealRequest(),
                              scoring_pb2.ScoreDealResponse)
        with pytest.raises(PermissionDenied):
            async for _ in client.export_training_data("globex", "scorer_rows"):
                pass
