"""`Client` against the real server: every RPC, with plain Python and NumPy
values in and out, the protobuf messages still reachable."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from vectoros_client import (
    Client,
    DeadlineExceeded,
    Deal,
    DealChange,
    ExportFormat,
    FeedbackRating,
    Outcome,
    RiskLevel,
    Scenario,
    SimilarityFilter,
    SimulationOptions,
)
from vectoros_client.v1 import common_pb2, scoring_pb2

from tests.clients.sample import NOW, QUARTER, history, open_pipeline

WORKSPACE = "py-sync"


@pytest.fixture(scope="module")
def client(served):
    with Client(served.address, token=served.writer) as made:
        made.wait_until_serving("vectoros.v1.SimilarityService", "vectoros.v1.InsightService", timeout=60)
        yield made


@pytest.fixture(scope="module")
def stored(client) -> list[Deal]:
    deals = history()
    result = client.upsert_deals(WORKSPACE, deals)
    assert (result.upserted, result.unchanged) == (6, 0)
    return deals


def test_embed_returns_unit_float32_vectors_in_order(client):
    texts = ["renewal with procurement", "", "renewal with procurement"]
    embedded = client.embed(texts)
    assert embedded.vectors.dtype == np.float32 and embedded.vectors.shape == (3, embedded.dimension)
    np.testing.assert_allclose(np.linalg.norm(embedded.vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(embedded.vectors[0], embedded.vectors[2])
    assert embedded.token_counts[0] > embedded.token_counts[1] and embedded.truncated == (False, False, False)
    assert embedded.model.name == "embedder" and embedded.model.version >= 1
    assert embedded.proto.embeddings[0].values[0] == pytest.approx(float(embedded.vectors[0, 0]))


def test_embed_deals_and_the_embedder_description(client):
    deals = history()[:2]
    embedded = client.embed_deals(deals)
    info = client.embedder_info()
    assert embedded.vectors.shape == (2, info.dimension) and embedded.template_version == info.template_version
    assert info.template_version == "deal-text-v1" and info.max_tokens > 0
    assert info.info.model == embedded.model and "production" in info.info.labels
    assert isinstance(info.info.created_time, datetime) and info.info.created_time.tzinfo is not None


def test_upsert_counts_what_changed(client, stored):
    again = client.upsert_deals(WORKSPACE, stored)
    assert (again.upserted, again.unchanged) == (6, 6)
    # Probability is not part of the embedded text; notes are.
    moved = replace(stored[2], probability=0.9)
    edited = replace(stored[3], notes=stored[3].notes + " Procurement asked for a discount.")
    changed = client.upsert_deals(WORKSPACE, [moved, edited])
    assert (changed.upserted, changed.unchanged) == (2, 1)
    client.upsert_deals(WORKSPACE, [stored[2], stored[3]])


def test_find_similar_by_id_text_and_deal_with_deals_as_they_were_stored(client, stored):
    by_id = client.find_similar_deals(WORKSPACE, deal_id="h0", top_k=5)
    assert "h0" not in {m.deal.id for m in by_id.matches} and len(by_id.matches) == 5
    scores = [m.score for m in by_id.matches]
    assert scores == sorted(scores, reverse=True)
    original = {deal.id: deal for deal in stored}
    for match in by_id.matches:
        returned = match.deal
        assert returned.outcome == original[returned.id].outcome
        assert returned.created_time == original[returned.id].created_time  # aware datetimes, same instant
        assert returned.name == original[returned.id].name
    summary = by_id.summary
    assert summary.won_count + summary.lost_count + summary.open_count == 5

    by_text = client.find_similar_deals(WORKSPACE, text="champion left and a security review", top_k=2)
    assert len(by_text.matches) == 2 and by_text.embedder.name == "embedder"
    won_only = client.find_similar_deals(WORKSPACE, deal=stored[0], filter=SimilarityFilter(outcomes=["won"]))
    assert won_only.matches and {m.deal.outcome for m in won_only.matches} == {Outcome.WON}
    assert won_only.proto.summary.won_count == len(won_only.matches)


def test_stats_and_delete(client, stored):
    extra = Deal(id="to-delete", name="Short-lived deal", value=1_000.0)
    client.upsert_deals(WORKSPACE, [extra])
    before = client.get_stats(WORKSPACE)
    assert before.total_deals == 7 and before.by_outcome[Outcome.WON] == 2 and before.by_outcome[Outcome.LOST] == 2
    assert client.delete_deals(WORKSPACE, ["to-delete", "never-stored"]) == 1
    assert client.get_stats(WORKSPACE).total_deals == 6


def test_scores_agree_one_by_one_and_in_a_batch(client):
    deals = open_pipeline()
    batch = client.score_deals(deals, top_factors=3)
    info = client.scorer_info()
    assert [s.deal_id for s in batch] == [d.id for d in deals]
    for deal, scored in zip(deals, batch, strict=True):
        single = client.score_deal(deal, top_factors=3)
        assert single.win_probability == pytest.approx(scored.win_probability)
        assert 0.0 <= single.win_probability <= 1.0 and len(single.top_factors) == 3
        expected = (RiskLevel.HIGH if single.win_probability < info.high_risk_below
                    else RiskLevel.LOW if single.win_probability >= info.low_risk_from else RiskLevel.MEDIUM)
        assert single.risk_level is expected
        assert single.model == info.info.model


def test_forecast_is_reproducible_and_reads_a_target(client):
    deals = open_pipeline()
    options = SimulationOptions(seed=11, simulations=5_000, histogram_bins=200)
    first = client.forecast(deals, start=QUARTER[0], end=QUARTER[1], options=options)
    second = client.forecast(deals, start=QUARTER[0], end=QUARTER[1], options=options)
    result = first.result
    assert first.seed == 11 and first.simulations == 5_000 and result.mean == second.result.mean
    assert result.weighted_pipeline == pytest.approx(sum(d.value * d.probability for d in deals))
    assert sum(b.count for b in result.histogram) == 5_000
    assert result.chance_of_reaching(-1.0) == 1.0
    assert result.chance_of_reaching(result.histogram[-1].upper + 1) == 0.0
    chances = [result.chance_of_reaching(t) for t in (result.p10, result.p50, result.p90)]
    assert chances == sorted(chances, reverse=True)
    # Between bins the reading is the share of simulations above: P90 leaves about a tenth.
    assert result.chance_of_reaching(result.p90) == pytest.approx(0.10, abs=0.03)
    assert all(m.start_time.tzinfo is not None for m in result.monthly)


def test_compare_scenarios(client):
    deals = open_pipeline()
    lose = Scenario("lose o4", removed_deal_ids=["o4"])
    sure = Scenario("win o0", changes=[DealChange("o0", probability=1.0)])
    compared = client.compare_scenarios(deals, [lose, sure], start=QUARTER[0], end=QUARTER[1],
                                        options=SimulationOptions(seed=3, simulations=4_000))
    assert [s.name for s in compared.scenarios] == ["lose o4", "win o0"]
    lost, won = compared.scenarios
    assert lost.mean_difference < 0 < won.mean_difference
    assert lost.mean_difference_ci[0] <= lost.mean_difference <= lost.mean_difference_ci[1]
    assert lost.result.total_pipeline == pytest.approx(compared.base.total_pipeline - deals[4].value)


def test_insights_feedback_outcome_scan_and_export(client, stored):
    deal = replace(open_pipeline("ins", 1)[0], workspace_id=WORKSPACE, notes="champion left, security review")
    client.upsert_deals(WORKSPACE, [deal])
    insights = client.generate_insights(deal)
    assert insights.insight_set_id and insights.insights and insights.generator == "rules"
    assert 0.0 <= insights.win_probability <= 1.0 and insights.scorer.name == "scorer"
    first = insights.insights[0]
    assert first.type.value in {"risk", "opportunity", "next_action", "prediction"}

    recorded = client.record_feedback(WORKSPACE, insights.insight_set_id, FeedbackRating.HELPFUL, insight_id=first.id,
                                      acted_on=True, idempotency_key="py-sync-fb-1")
    repeated = client.record_feedback(WORKSPACE, insights.insight_set_id, "helpful", insight_id=first.id,
                                      acted_on=True, idempotency_key="py-sync-fb-1")
    assert not recorded.duplicate and repeated.duplicate and repeated.feedback_id == recorded.feedback_id

    closed = datetime(2026, 12, 1, tzinfo=UTC)
    assert client.record_outcome(WORKSPACE, deal.id, Outcome.WON, closed_time=closed, final_value=9_000) is False
    assert client.record_outcome(WORKSPACE, deal.id, "won", closed_time=closed, final_value=9_000) is True

    scan = client.scan_pipeline(WORKSPACE, open_pipeline("scan", 3))
    assert scan.scanned_deals == 3 and all(a.deal_id.startswith("scan") for a in scan.alerts)

    lines = list(client.export_training_data(WORKSPACE, ExportFormat.LABELLED_EXAMPLES, since=NOW))
    examples = [json.loads(line) for line in lines]
    mine = [e for e in examples if e["generated"]["insight_set_id"] == insights.insight_set_id]
    assert len(mine) == 1 and mine[0]["outcome"]["outcome"] == "won"
    assert [f["feedback_id"] for f in mine[0]["feedback"]] == [recorded.feedback_id]


def test_stopping_an_export_early_is_fine(client):
    stream = client.export_training_data(WORKSPACE, "labelled_examples")
    next(stream, None)
    stream.close()  # cancels the call; the channel goes on serving
    assert client.get_stats(WORKSPACE).total_deals >= 6


def test_protobuf_messages_are_accepted_and_reachable(client):
    from vectoros.v1 import common_pb2 as server_common_pb2

    message = common_pb2.Deal(id="proto-deal", value=5_000.0, probability=0.5)
    from_server_stubs = server_common_pb2.Deal(id="proto-deal", value=5_000.0, probability=0.5)
    assert client.score_deal(message).win_probability == client.score_deal(from_server_stubs).win_probability
    raw = client.call("/vectoros.v1.ScoringService/ScoreDeal", scoring_pb2.ScoreDealRequest(deal=message),
                      scoring_pb2.ScoreDealResponse)
    assert raw.score.win_probability == pytest.approx(client.score_deal(message).win_probability)


def test_every_call_has_a_deadline(served):
    # 500,000 simulations of 40 deals take far longer than 50 ms on this machine.
    heavy = open_pipeline("slow", 40)
    options = SimulationOptions(simulations=500_000)
    with Client(served.address, token=served.writer, timeout=0.05) as hurried:
        with pytest.raises(DeadlineExceeded) as by_default:
            hurried.forecast(heavy, start=QUARTER[0], end=QUARTER[1], options=options)
    assert by_default.value.method == "/vectoros.v1.ForecastService/Forecast"
    with Client(served.address, token=served.writer) as patient:
        with pytest.raises(DeadlineExceeded):
            patient.forecast(heavy, start=QUARTER[0], end=QUARTER[1], options=options, timeout=0.05)


@pytest.mark.parametrize(
    "call, error, text",
    [
        (lambda c: c.forecast([Deal(id="a", value=1.0, probability=0.5)], start=datetime(2027, 1, 1),
                              end=QUARTER[1]), ValueError, "period.start_time: must be timezone-aware"),
        (lambda c: c.score_deal({"id": "a"}), TypeError, "deal: must be a vectoros_client.Deal"),
        (lambda c: c.score_deals(Deal(id="a")), TypeError, "deals: must be a sequence of deals"),
        (lambda c: c.score_deals([Deal(id="a"), Deal(id="b", value="lots")]), TypeError, "deals[1].value:"),
        (lambda c: c.find_similar_deals(WORKSPACE, deal_id="a", text="b"), ValueError,
         "give exactly one of deal, deal_id or text (got deal_id, text)"),
        (lambda c: c.record_feedback(WORKSPACE, "set", "great"), ValueError,
         "rating: must be one of helpful, not_helpful, incorrect; got 'great'"),
        (lambda c: c.embed("one text"), TypeError, "texts: must be a sequence of strings"),
        (lambda c: c.upsert_deals(WORKSPACE, [Deal(id="a", stage_history=(("x", NOW),))]), TypeError,
         "deals[0].stage_history[0]: must be a StageChange, got tuple"),
        (lambda c: c.forecast([], start=QUARTER[0], end=QUARTER[1], options=SimulationOptions(simulations=-1)),
         ValueError, "options.simulations:"),
        (lambda c: c.score_deal(Deal(id="a"), timeout=0), ValueError, "timeout: must be a number of seconds > 0"),
    ],
)
def test_bad_arguments_fail_before_sending_and_name_the_field(client, call, error, text):
    with pytest.raises(error) as raised:
        call(client)
    assert text in str(raised.value)
