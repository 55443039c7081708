"""Tenants, adversarially, against the real server (auth on, real models): a token
of workspace A can neither name workspace B in any field of any RPC, nor reach
B's data through ids of its own workspace (deal ids, insight set ids, filters),
nor count, change, export or be alerted about anything of B."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from server.auth import create_token
from server.models.publish import publish
from tests.support.serverproc import start_server
from training import embedder as embedder_export
from training.records import write_deals
from training.scorer import TrainConfig, train_scorer
from training.synth import DATE_COLUMNS, synth_deals
from vectoros.core.deal_codec.proto import deal_to_proto
from vectoros.core.deals import Outcome
from vectoros.v1 import (
    common_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    forecast_pb2,
    forecast_pb2_grpc,
    insight_pb2,
    insight_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
    similarity_pb2,
    similarity_pb2_grpc,
)

pytestmark = pytest.mark.slow  # serves a trained scorer and the exported embedder

TINY = TrainConfig(folds=2, grid=({"max_depth": 3, "learning_rate": 0.2, "min_child_weight": 1},), max_trees=40,
                   progress=False, golden_rows=4)
A, B = "tenant-a", "tenant-b"
NOW = datetime.now(UTC)


def live(record, workspace: str = ""):
    """A synthetic deal as a CRM sends it now: open, its dates moved to now."""
    shift = NOW - (record.snapshot_at or NOW)
    move = lambda t: t + shift if t is not None else None  # noqa: E731
    return replace(record, workspace_id=workspace, outcome=Outcome.OPEN, closed_at=None,
                   created_at=move(record.created_at), expected_close_at=move(record.expected_close_at),
                   stage_entered_at=move(record.stage_entered_at), last_activity_at=move(record.last_activity_at),
                   stage_history=tuple(replace(c, entered_at=move(c.entered_at)) for c in record.stage_history),
                   snapshot_at=None)


class Tenant:
    """The stubs of one caller, with its token on every call."""

    def __init__(self, channel: grpc.Channel, token: str) -> None:
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.similarity = similarity_pb2_grpc.SimilarityServiceStub(channel)
        self.insight = insight_pb2_grpc.InsightServiceStub(channel)
        self.scoring = scoring_pb2_grpc.ScoringServiceStub(channel)
        self.forecast = forecast_pb2_grpc.ForecastServiceStub(channel)
        self.embedding = embedding_pb2_grpc.EmbeddingServiceStub(channel)

    def __call__(self, method, request):
        return method(request, metadata=self.metadata, timeout=60)

    def stream(self, method, request) -> list:
        return list(method(request, metadata=self.metadata, timeout=60))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tenancy")
    records = synth_deals(300, seed=44)
    data = write_deals(records, folder / "deals.jsonl", custom_dates=DATE_COLUMNS)
    models = folder / "models"
    publish(train_scorer(data, folder / "scorer", TINY).out_dir, models)
    publish(embedder_export.cached_export(), models)
    tokens = folder / "tokens.json"
    made = {
        "a": create_token(tokens, "writer", [A], name="a")[0],
        "a_reader": create_token(tokens, "reader", [A], name="a-reader")[0],
        "b": create_token(tokens, "writer", [B], name="b")[0],
    }
    server = start_server("--data-dir", str(folder / "data"), "--models", str(models), "--tokens-file", str(tokens))
    channel = server.channel()
    a, b = Tenant(channel, made["a"]), Tenant(channel, made["b"])
    # Workspace B's history: closed and open deals, insights, feedback, an outcome, a scan.
    closed = [r for r in records if r.outcome is not Outcome.OPEN][:60]
    b_open = [live(r) for r in records if r.outcome is Outcome.OPEN][:5]
    b(b.similarity.UpsertDeals, similarity_pb2.UpsertDealsRequest(
        workspace_id=B, deals=[deal_to_proto(replace(r, workspace_id="")) for r in closed + b_open]))
    insight = b(b.insight.GenerateInsights, insight_pb2.GenerateInsightsRequest(
        deal=deal_to_proto(replace(b_open[0], workspace_id=B))))
    b(b.insight.RecordFeedback, insight_pb2.RecordFeedbackRequest(
        workspace_id=B, insight_set_id=insight.insight_set_id, rating=insight_pb2.FEEDBACK_RATING_HELPFUL))
    outcome = insight_pb2.RecordOutcomeRequest(workspace_id=B, deal_id=b_open[1].deal_id,
                                               outcome=common_pb2.DEAL_OUTCOME_WON, final_value=1000.0)
    outcome.closed_time.FromDatetime(NOW)
    b(b.insight.RecordOutcome, outcome)
    b(b.insight.ScanPipeline, insight_pb2.ScanPipelineRequest(workspace_id=B))
    yield {"a": a, "b": b, "a_reader": Tenant(channel, made["a_reader"]), "b_open": b_open, "closed": closed,
           "insight_set_id": insight.insight_set_id, "tokens": made, "server": server}
    channel.close()
    assert server.terminate() == 0


def denied(call, name: str = "") -> str:
    with pytest.raises(grpc.RpcError, match="") as error:
        try:
            call()
        except grpc.RpcError:
            raise
        else:
            raise AssertionError(f"{name}: the call was allowed")
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED, error.value.details()
    return error.value.details()


def b_deal(world, **changes) -> common_pb2.Deal:
    return deal_to_proto(replace(world["b_open"][0], workspace_id=B, **changes))


def forecast_request(deal: common_pb2.Deal) -> forecast_pb2.ForecastRequest:
    request = forecast_pb2.ForecastRequest(deals=[deal], options=forecast_pb2.SimulationOptions(simulations=200))
    request.period.start_time.FromDatetime(NOW)
    request.period.end_time.FromDatetime(NOW + timedelta(days=90))
    return request


def test_naming_another_workspace_in_any_field_of_any_rpc_is_denied(world):
    a = world["a"]
    own = deal_to_proto(live(world["closed"][0], A))
    other = b_deal(world)
    compare = forecast_pb2.CompareScenariosRequest(base_deals=[own])
    compare.period.CopyFrom(forecast_request(own).period)
    compare.scenarios.add(name="x").added_deals.append(replace_id(other, "new"))
    cases = {
        "UpsertDeals workspace_id": (a.similarity.UpsertDeals, similarity_pb2.UpsertDealsRequest(workspace_id=B),
                                     "workspace_id"),
        "UpsertDeals deals[0]": (a.similarity.UpsertDeals,
                                 similarity_pb2.UpsertDealsRequest(workspace_id=A, deals=[other]),
                                 "deals[0].workspace_id"),
        "DeleteDeals": (a.similarity.DeleteDeals, similarity_pb2.DeleteDealsRequest(workspace_id=B, deal_ids=["x"]),
                        "workspace_id"),
        "FindSimilarDeals": (a.similarity.FindSimilarDeals,
                             similarity_pb2.FindSimilarDealsRequest(workspace_id=B, text="renewal"), "workspace_id"),
        "FindSimilarDeals deal": (a.similarity.FindSimilarDeals,
                                  similarity_pb2.FindSimilarDealsRequest(workspace_id=A, deal=other),
                                  "deal.workspace_id"),
        "GetStats": (a.similarity.GetStats, similarity_pb2.GetStatsRequest(workspace_id=B), "workspace_id"),
        "GenerateInsights": (a.insight.GenerateInsights, insight_pb2.GenerateInsightsRequest(deal=other),
                             "deal.workspace_id"),
        "RecordFeedback": (a.insight.RecordFeedback, insight_pb2.RecordFeedbackRequest(
            workspace_id=B, insight_set_id=world["insight_set_id"], rating=insight_pb2.FEEDBACK_RATING_INCORRECT),
            "workspace_id"),
        "RecordOutcome": (a.insight.RecordOutcome, insight_pb2.RecordOutcomeRequest(
            workspace_id=B, deal_id=world["b_open"][0].deal_id, outcome=common_pb2.DEAL_OUTCOME_LOST),
            "workspace_id"),
        "ScanPipeline": (a.insight.ScanPipeline, insight_pb2.ScanPipelineRequest(workspace_id=B), "workspace_id"),
        "ScanPipeline deals[0]": (a.insight.ScanPipeline, insight_pb2.ScanPipelineRequest(
            workspace_id=A, deals=[other]), "deals[0].workspace_id"),
        "ScoreDeal": (a.scoring.ScoreDeal, scoring_pb2.ScoreDealRequest(deal=other), "deal.workspace_id"),
        "ScoreDeals deals[1]": (a.scoring.ScoreDeals, scoring_pb2.ScoreDealsRequest(deals=[own, other]),
                                "deals[1].workspace_id"),
        "Forecast": (a.forecast.Forecast, forecast_request(other), "deals[0].workspace_id"),
        "CompareScenarios": (a.forecast.CompareScenarios, compare, "scenarios[0].added_deals[0].workspace_id"),
        "EmbedDeals": (a.embedding.EmbedDeals, embedding_pb2.EmbedDealsRequest(deals=[own, other]),
                       "deals[1].workspace_id"),
    }
    for name, (method, request, field) in cases.items():
        details = denied(lambda m=method, r=request: a(m, r), name)
        assert details == f"{field}: this token does not hold workspace '{B}'", name
    with pytest.raises(grpc.RpcError) as error:
        a.stream(a.insight.ExportTrainingData, insight_pb2.ExportTrainingDataRequest(
            workspace_id=B, format=insight_pb2.EXPORT_FORMAT_LABELLED_EXAMPLES))
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED


def replace_id(deal: common_pb2.Deal, deal_id: str) -> common_pb2.Deal:
    copy = common_pb2.Deal()
    copy.CopyFrom(deal)
    copy.id = deal_id
    return copy


def test_ids_of_another_workspace_read_as_unknown_in_ones_own(world):
    a, b_open = world["a"], world["b_open"]
    for call, request in (
        (a.similarity.FindSimilarDeals, similarity_pb2.FindSimilarDealsRequest(workspace_id=A,
                                                                                deal_id=b_open[0].deal_id)),
        (a.insight.RecordFeedback, insight_pb2.RecordFeedbackRequest(
            workspace_id=A, insight_set_id=world["insight_set_id"], rating=insight_pb2.FEEDBACK_RATING_INCORRECT)),
        (a.insight.RecordOutcome, insight_pb2.RecordOutcomeRequest(
            workspace_id=A, deal_id=b_open[2].deal_id, outcome=common_pb2.DEAL_OUTCOME_LOST)),
    ):
        with pytest.raises(grpc.RpcError) as error:
            a(call, request)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND, error.value.details()
        assert B not in error.value.details()


def test_nothing_of_another_workspace_is_counted_changed_exported_or_alerted(world):
    a, b = world["a"], world["b"]
    before = b(b.similarity.GetStats, similarity_pb2.GetStatsRequest(workspace_id=B)).total_deals
    assert before == len(world["closed"]) + len(world["b_open"])
    assert a(a.similarity.GetStats, similarity_pb2.GetStatsRequest(workspace_id=A)).total_deals == 0
    ids = [d.deal_id for d in world["b_open"]] + [r.deal_id for r in world["closed"][:10]]
    deleted = a(a.similarity.DeleteDeals, similarity_pb2.DeleteDealsRequest(workspace_id=A, deal_ids=ids))
    assert deleted.deleted == 0
    assert b(b.similarity.GetStats, similarity_pb2.GetStatsRequest(workspace_id=B)).total_deals == before
    # A search of one's own workspace, with filters and any text, finds none of B's deals.
    found = a(a.similarity.FindSimilarDeals, similarity_pb2.FindSimilarDealsRequest(
        workspace_id=A, text=world["b_open"][0].notes or "renewal", top_k=100,
        filter=similarity_pb2.SimilarityFilter(outcomes=[common_pb2.DEAL_OUTCOME_WON, common_pb2.DEAL_OUTCOME_LOST])))
    assert list(found.matches) == []
    for export_format in (insight_pb2.EXPORT_FORMAT_LABELLED_EXAMPLES, insight_pb2.EXPORT_FORMAT_CHAT_FINETUNE):
        lines = [line for chunk in a.stream(a.insight.ExportTrainingData, insight_pb2.ExportTrainingDataRequest(
            workspace_id=A, format=export_format)) for line in chunk.lines]
        assert lines == []
        theirs = [line for chunk in b.stream(b.insight.ExportTrainingData, insight_pb2.ExportTrainingDataRequest(
            workspace_id=B, format=export_format)) for line in chunk.lines]
        assert theirs, "B's own export must hold its insight set"
    scan = a(a.insight.ScanPipeline, insight_pb2.ScanPipelineRequest(workspace_id=A))
    assert scan.scanned_deals == 0 and list(scan.alerts) == []
    # A's insights on a deal that shares an id with one of B's see none of B's history.
    twin = deal_to_proto(replace(world["b_open"][0], workspace_id=A))
    insight = a(a.insight.GenerateInsights, insight_pb2.GenerateInsightsRequest(deal=twin))
    text = json.dumps([i.description for i in insight.insights])
    for record in world["closed"]:
        assert record.deal_id not in text


def test_a_reader_may_read_but_not_write_its_own_workspace(world):
    reader = world["a_reader"]
    assert reader(reader.similarity.GetStats, similarity_pb2.GetStatsRequest(workspace_id=A)).total_deals == 0
    details = denied(lambda: reader(reader.similarity.UpsertDeals, similarity_pb2.UpsertDealsRequest(
        workspace_id=A, deals=[deal_to_proto(live(world["closed"][1]))])))
    assert details == "authorization: a reader token may not call UpsertDeals (needs writer)"
    log = "\n".join(json.dumps(line) for line in world["server"].log_lines)
    for token in world["tokens"].values():
        assert token not in log and token.split("_")[2] not in log
