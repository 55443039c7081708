"""InsightService over a real channel, next to the real SimilarityService: the real
embedder (all-MiniLM-L6-v2 as exported ONNX, cached by
`training.embedder.cached_export`), a real scorer trained here on synthetic
deals, Qdrant Edge and the SQLite ledger on disk, the rules generator.

Covers GenerateInsights (and its cache), RecordFeedback, RecordOutcome (seen by
the next similarity search), ScanPipeline, ExportTrainingData, errors naming
their field, workspace isolation, and the learning loop: outcomes recorded,
data exported, a new scorer trained on it and published, the registry's
polling swaps it in, and insights then come from the new version."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.config import ServerConfig
from server.engines.insight import InsightRuntime
from server.engines.scoring import load_scorer
from server.interceptors import ErrorAndLogInterceptor
from server.models.publish import publish
from server.models.registry import ModelRegistry
from server.services.insight import add_insight_service
from server.services.similarity import add_similarity_service
from tests.support.fake_anthropic import FakeAnthropic, deal_context, status_reply, tool_reply
from tests.support.serverproc import start_server
from training import embedder as embedder_export
from training.records import read_deals, write_deals
from training.scorer import TrainConfig, train_scorer
from training.synth import DATE_COLUMNS, synth_deals
from vectoros.core.deal_codec.proto import deal_to_proto, time_to_proto
from vectoros.core.deals import DealRecord, Outcome
from vectoros.core.embedder import load_embedder
from vectoros.v1 import common_pb2, insight_pb2, insight_pb2_grpc, similarity_pb2, similarity_pb2_grpc

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)

on_session_loop = pytest.mark.asyncio(loop_scope="session")
TINY = TrainConfig(folds=2, grid=({"max_depth": 3, "learning_rate": 0.2, "min_child_weight": 1},), max_trees=40,
                   progress=False, golden_rows=4)
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("insight-models")
    data = write_deals(synth_deals(400, seed=21), folder / "deals.jsonl", custom_dates=DATE_COLUMNS)
    publish(train_scorer(data, folder / "scorer", TINY).out_dir, folder / "models")
    publish(embedder_export.cached_export(), folder / "models")
    return folder / "models"


def make_registry(models: Path) -> ModelRegistry:
    registry = ModelRegistry(models, {"scorer": load_scorer, "embedder": load_embedder})
    registry.refresh(notify=False)
    return registry


class Running:
    def __init__(self, server, similarity, insight, channel, registry) -> None:
        self.server, self.similarity, self.insight, self.channel = server, similarity, insight, channel
        self.registry = registry
        self.stub = insight_pb2_grpc.InsightServiceStub(channel)
        self.deals = similarity_pb2_grpc.SimilarityServiceStub(channel)

    async def stop(self) -> None:
        await self.channel.close()
        await self.server.stop(None)
        await self.insight.close()
        self.similarity.close()


async def start(registry, data_dir: Path, **settings) -> Running:
    server = grpc.aio.server(interceptors=[ErrorAndLogInterceptor()])
    config = ServerConfig(data_dir=data_dir, **settings)
    similarity = await add_similarity_service(server, registry, config)
    insight = await InsightRuntime.open(registry, config, similarity)
    add_insight_service(server, insight)
    assert insight.ready()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    made = Running(server, similarity, insight, grpc.aio.insecure_channel(f"127.0.0.1:{port}"), registry)
    made.port = port
    return made


@pytest.fixture(scope="module")
async def running(models, tmp_path_factory):
    made = await start(make_registry(models), tmp_path_factory.mktemp("insight") / "data")
    yield made
    await made.stop()


def shifted(record: DealRecord, now: datetime) -> DealRecord:
    """A synthetic snapshot moved in time so that its snapshot is `now` (its close,
    for a closed deal, then lies ahead, as it does for a live deal)."""
    delta = now - record.snapshot_at
    move = lambda t: t + delta if t is not None else None  # noqa: E731
    attributes = dict(record.numeric_attributes)
    for name in DATE_COLUMNS:
        if name in attributes:
            attributes[name] += delta.total_seconds()
    return replace(
        record,
        created_at=move(record.created_at), expected_close_at=move(record.expected_close_at),
        stage_entered_at=move(record.stage_entered_at), last_activity_at=move(record.last_activity_at),
        closed_at=move(record.closed_at), snapshot_at=now, numeric_attributes=attributes,
        stage_history=tuple(replace(c, entered_at=move(c.entered_at)) for c in record.stage_history),
    )


def as_open(record: DealRecord, workspace: str) -> common_pb2.Deal:
    deal = deal_to_proto(replace(record, outcome=Outcome.OPEN, closed_at=None, workspace_id=workspace))
    return deal


async def upsert(running: Running, workspace: str, records) -> None:
    for start_at in range(0, len(records), 128):
        chunk = [deal_to_proto(replace(r, workspace_id="")) for r in records[start_at : start_at + 128]]
        await running.deals.UpsertDeals(similarity_pb2.UpsertDealsRequest(workspace_id=workspace, deals=chunk))


async def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value.code(), error.value.details()


async def export(stub, workspace: str, export_format: int, **fields) -> list[str]:
    lines = []
    request = insight_pb2.ExportTrainingDataRequest(workspace_id=workspace, format=export_format, **fields)
    async for chunk in stub.ExportTrainingData(request):
        lines.extend(chunk.lines)
    return lines


@on_session_loop
async def test_generate_feedback_outcome_and_export(running):
    now = datetime.now(UTC)
    records = [shifted(r, now - timedelta(days=1)) for r in synth_deals(80, seed=31)]
    await upsert(running, "acme", records)
    target = next(r for r in records if r.outcome is Outcome.OPEN)
    request = insight_pb2.GenerateInsightsRequest(deal=as_open(target, "acme"))
    response = await running.stub.GenerateInsights(request)
    assert response.insight_set_id and response.generator == "rules" and not response.fallback_reason
    assert (response.scorer.name, response.scorer.version) == ("scorer", 1)
    assert (response.embedder.name, response.embedder.version) == ("embedder", 1)
    assert response.insights[-1].type == insight_pb2.INSIGHT_TYPE_PREDICTION
    assert 0 <= response.win_probability <= 1 and "scorer v1" in response.win_probability_reasoning
    closed_ids = {r.deal_id for r in records if r.outcome is not Outcome.OPEN}
    for insight in response.insights:
        assert set(insight.evidence.similar_deal_ids) <= closed_ids
        assert 0 <= insight.confidence <= 1
    assert response.usage.input_tokens == 0 and response.usage.latency_ms > 0 and not response.cached

    again = await running.stub.GenerateInsights(request)
    assert again.cached and again.insight_set_id == response.insight_set_id
    assert list(again.insights) == list(response.insights)
    fresh = await running.stub.GenerateInsights(
        insight_pb2.GenerateInsightsRequest(deal=as_open(target, "acme"), bypass_cache=True)
    )
    assert not fresh.cached and fresh.insight_set_id != response.insight_set_id

    feedback = insight_pb2.RecordFeedbackRequest(
        workspace_id="acme", insight_set_id=response.insight_set_id, insight_id=response.insights[0].id,
        rating=insight_pb2.FEEDBACK_RATING_HELPFUL, acted_on=True, comment="useful", idempotency_key="fb-1",
    )
    first = await running.stub.RecordFeedback(feedback)
    second = await running.stub.RecordFeedback(feedback)
    assert not first.duplicate and second.duplicate and first.feedback_id == second.feedback_id

    closed_time = now + timedelta(days=2)
    outcome = insight_pb2.RecordOutcomeRequest(
        workspace_id="acme", deal_id=target.deal_id, outcome=common_pb2.DEAL_OUTCOME_WON,
        closed_time=time_to_proto(closed_time), final_value=12_345.0,
    )
    assert not (await running.stub.RecordOutcome(outcome)).duplicate
    assert (await running.stub.RecordOutcome(outcome)).duplicate
    # The next retrieval sees the outcome.
    found = await running.deals.FindSimilarDeals(
        similarity_pb2.FindSimilarDealsRequest(workspace_id="acme", text=target.notes or target.name, top_k=100)
    )
    stored = next(m.deal for m in found.matches if m.deal.id == target.deal_id)
    assert stored.outcome == common_pb2.DEAL_OUTCOME_WON and stored.value == 12_345.0

    labelled = [json.loads(line) for line in await export(
        running.stub, "acme", insight_pb2.EXPORT_FORMAT_LABELLED_EXAMPLES)]
    assert len(labelled) == 2
    example = next(e for e in labelled if e["generated"]["insight_set_id"] == response.insight_set_id)
    assert example["deal_snapshot"]["deal_id"] == target.deal_id
    assert [f["rating"] for f in example["feedback"]] == ["helpful"]
    assert example["outcome"]["outcome"] == "won" and example["outcome"]["final_value"] == 12_345.0
    assert len(example["generated"]["insights"]) == len(response.insights)
    chat = [json.loads(line) for line in await export(running.stub, "acme", insight_pb2.EXPORT_FORMAT_CHAT_FINETUNE)]
    assert len(chat) == 1  # only the set rated helpful
    roles = [m["role"] for m in chat[0]["messages"]]
    assert roles == ["system", "user", "assistant"] and "<deal_context>" in chat[0]["messages"][1]["content"]
    answer = json.loads(chat[0]["messages"][2]["content"])
    assert answer["win_probability"] == pytest.approx(response.win_probability)
    rows = await export(running.stub, "acme", insight_pb2.EXPORT_FORMAT_SCORER_ROWS)
    assert len(rows) == 2 and all(json.loads(r)["outcome"] == "won" for r in rows)
    later = await export(running.stub, "acme", insight_pb2.EXPORT_FORMAT_LABELLED_EXAMPLES,
                         since_time=time_to_proto(now + timedelta(days=1)))
    assert later == []


@on_session_loop
async def test_errors_name_the_field(running):
    stub = running.stub
    deal = as_open(synth_deals(1, seed=3)[0], "acme")
    cases = [
        (stub.GenerateInsights(insight_pb2.GenerateInsightsRequest()), INVALID, "deal: required"),
        (stub.GenerateInsights(insight_pb2.GenerateInsightsRequest(deal=common_pb2.Deal(id="x"))), INVALID,
         "deal.workspace_id: required"),
        (stub.GenerateInsights(insight_pb2.GenerateInsightsRequest(
            deal=common_pb2.Deal(id="x", workspace_id="acme", outcome=common_pb2.DEAL_OUTCOME_WON))), INVALID,
         "deal.outcome: "),
        (stub.GenerateInsights(insight_pb2.GenerateInsightsRequest(
            deal=common_pb2.Deal(id="x", workspace_id="acme", value=-1))), INVALID, "deal.value: "),
        (stub.RecordFeedback(insight_pb2.RecordFeedbackRequest(workspace_id="acme", insight_set_id="s")), INVALID,
         "rating: "),
        (stub.RecordFeedback(insight_pb2.RecordFeedbackRequest(workspace_id="acme", insight_set_id="s", rating=7)),
         INVALID, "rating: "),
        (stub.RecordFeedback(insight_pb2.RecordFeedbackRequest(
            workspace_id="acme", insight_set_id="unknown", rating=insight_pb2.FEEDBACK_RATING_HELPFUL)),
         NOT_FOUND, "insight_set_id: "),
        (stub.RecordOutcome(insight_pb2.RecordOutcomeRequest(
            workspace_id="acme", deal_id=deal.id, outcome=common_pb2.DEAL_OUTCOME_OPEN)), INVALID, "outcome: "),
        (stub.RecordOutcome(insight_pb2.RecordOutcomeRequest(workspace_id="acme", deal_id="d")), INVALID,
         "outcome: "),
        (stub.RecordOutcome(insight_pb2.RecordOutcomeRequest(
            workspace_id="acme", deal_id="nobody", outcome=common_pb2.DEAL_OUTCOME_LOST)), NOT_FOUND, "deal_id: "),
        (stub.RecordOutcome(insight_pb2.RecordOutcomeRequest(
            workspace_id="acme", deal_id="d", outcome=common_pb2.DEAL_OUTCOME_LOST, final_value=-5)), INVALID,
         "final_value: "),
        (stub.ScanPipeline(insight_pb2.ScanPipelineRequest()), INVALID, "workspace_id: required"),
        (stub.ScanPipeline(insight_pb2.ScanPipelineRequest(workspace_id="acme", deals=[
            common_pb2.Deal(id="a", outcome=common_pb2.DEAL_OUTCOME_LOST)])), INVALID, "deals[0].outcome: "),
        (stub.ScanPipeline(insight_pb2.ScanPipelineRequest(workspace_id="acme", deals=[
            common_pb2.Deal(id="a", workspace_id="other")])), INVALID, "deals[0].workspace_id: "),
        (export(stub, "acme", insight_pb2.EXPORT_FORMAT_UNSPECIFIED), INVALID, "format: "),
        (export(stub, "", insight_pb2.EXPORT_FORMAT_SCORER_ROWS), INVALID, "workspace_id: "),
    ]
    for call, code, prefix in cases:
        got_code, details = await status_of(call)
        assert (got_code, details[: len(prefix)]) == (code, prefix), details


@on_session_loop
async def test_workspaces_cannot_see_each_other(running):
    now = datetime.now(UTC)
    records = [shifted(r, now - timedelta(days=1)) for r in synth_deals(40, seed=41)]
    await upsert(running, "iso-a", records)
    target = next(r for r in records if r.outcome is Outcome.OPEN)
    mine = await running.stub.GenerateInsights(insight_pb2.GenerateInsightsRequest(deal=as_open(target, "iso-a")))
    scan_a = await running.stub.ScanPipeline(insight_pb2.ScanPipelineRequest(workspace_id="iso-a"))
    assert scan_a.scanned_deals == sum(r.outcome is Outcome.OPEN for r in records)
    # Workspace B: cannot rate A's set, record A's outcome, see A's alerts or export A's ledger.
    code, details = await status_of(running.stub.RecordFeedback(insight_pb2.RecordFeedbackRequest(
        workspace_id="iso-b", insight_set_id=mine.insight_set_id, rating=insight_pb2.FEEDBACK_RATING_INCORRECT)))
    assert code == NOT_FOUND and details.startswith("insight_set_id: ")
    code, _ = await status_of(running.stub.RecordOutcome(insight_pb2.RecordOutcomeRequest(
        workspace_id="iso-b", deal_id=target.deal_id, outcome=common_pb2.DEAL_OUTCOME_LOST)))
    assert code == NOT_FOUND
    scan_b = await running.stub.ScanPipeline(insight_pb2.ScanPipelineRequest(workspace_id="iso-b"))
    assert scan_b.scanned_deals == 0 and not scan_b.alerts
    assert await export(running.stub, "iso-b", insight_pb2.EXPORT_FORMAT_LABELLED_EXAMPLES) == []
    assert running.insight.engine.ledger.alerts("iso-b") == []
    # The same deal sent by B gets B's (empty) context, never A's deals.
    theirs = await running.stub.GenerateInsights(insight_pb2.GenerateInsightsRequest(deal=as_open(target, "iso-b")))
    assert all(not i.evidence.similar_deal_ids for i in theirs.insights)


@on_session_loop
async def test_scan_pipeline_alerts_are_stable_and_stored(running):
    now = datetime.now(UTC)
    records = [shifted(r, now - timedelta(days=90)) for r in synth_deals(120, seed=51)]
    await upsert(running, "scan", records)
    first = await running.stub.ScanPipeline(insight_pb2.ScanPipelineRequest(workspace_id="scan"))
    assert first.scanned_deals == sum(r.outcome is Outcome.OPEN for r in records) and first.alerts
    ranks = [a.priority for a in first.alerts]
    assert ranks == sorted(ranks)  # CRITICAL (1) first
    rules = {a.rule for a in first.alerts}
    assert {"stale_deal", "close_date_slippage"} <= rules  # 90 days on, open deals went quiet and overdue
    second = await running.stub.ScanPipeline(insight_pb2.ScanPipelineRequest(workspace_id="scan"))
    assert [a.dedup_key for a in second.alerts] == [a.dedup_key for a in first.alerts]
    stored = {a.dedup_key for a in running.insight.engine.ledger.alerts("scan")}
    assert stored == {a.dedup_key for a in first.alerts}
    # Deals sent in the request are scanned instead, and compared with the last scan.
    deal = next(r for r in records if r.outcome is Outcome.OPEN)
    lowered = replace(deal, probability=max(0.0, (deal.probability or 0.5) - 0.3), outcome=Outcome.OPEN)
    sent = await running.stub.ScanPipeline(insight_pb2.ScanPipelineRequest(
        workspace_id="scan", deals=[as_open(lowered, "scan")]))
    assert sent.scanned_deals == 1
    if deal.probability is not None and deal.probability >= 0.3:
        assert "probability_drop" in {a.rule for a in sent.alerts}


@on_session_loop
async def test_learning_loop_retrains_and_hot_swaps(models, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(models, root)  # this test publishes a version: keep the shared repository as it is
    registry = make_registry(root)
    running = await start(registry, tmp_path / "data")
    stop = asyncio.Event()
    polling = asyncio.create_task(registry.run(0.2, stop))
    try:
        now = datetime.now(UTC)
        deals = [shifted(r, now) for r in synth_deals(400, seed=61) if r.outcome is not Outcome.OPEN][:170]
        for record in deals:  # insights as the deals stood, then how they ended
            await running.stub.GenerateInsights(
                insight_pb2.GenerateInsightsRequest(deal=as_open(record, "loop"))
            )
        for record in deals:
            await running.stub.RecordOutcome(insight_pb2.RecordOutcomeRequest(
                workspace_id="loop", deal_id=record.deal_id,
                outcome=common_pb2.DEAL_OUTCOME_WON if record.outcome is Outcome.WON else common_pb2.DEAL_OUTCOME_LOST,
                closed_time=time_to_proto(record.closed_at), final_value=record.value,
            ))
        rows = await export(running.stub, "loop", insight_pb2.EXPORT_FORMAT_SCORER_ROWS)
        assert len(rows) == len(deals)
        data = tmp_path / "exported.jsonl"
        data.write_text("\n".join(rows) + "\n", encoding="utf-8")
        read = read_deals(data)  # the documented schema, as `vectoros train scorer` reads it
        assert len(read.closed) == len(deals)
        assert {r.deal_id: r.outcome for r in read.records} == {r.deal_id: r.outcome for r in deals}

        result = await asyncio.to_thread(train_scorer, data, tmp_path / "retrained", TINY)
        # Forced: held-out metrics of different data sets do not compare.
        assert publish(result.out_dir, root, force=True).version == 2
        for _ in range(100):  # the registry's own polling loads and swaps it
            response = await running.stub.GenerateInsights(insight_pb2.GenerateInsightsRequest(
                deal=as_open(deals[0], "loop"), bypass_cache=True))
            if response.scorer.version == 2:
                break
            await asyncio.sleep(0.1)
        assert response.scorer.version == 2
        # Quality per scorer version: the Brier score of the probabilities shown, against
        # the same figure computed from the exported labelled examples.
        quality = {(q.generator, q.scorer_version): q for q in running.insight.engine.ledger.quality("loop")}
        examples = [json.loads(line) for line in await export(
            running.stub, "loop", insight_pb2.EXPORT_FORMAT_LABELLED_EXAMPLES)]
        shown = [(e["generated"]["win_probability"], e["outcome"]["outcome"] == "won")
                 for e in examples if e["generated"]["scorer"]["version"] == 1]
        v1 = quality[("rules", 1)]
        assert v1.outcomes == v1.insight_sets == len(shown) >= len(deals)
        assert v1.brier == pytest.approx(sum((p - won) ** 2 for p, won in shown) / len(shown))
        assert quality[("rules", 2)].insight_sets >= 1
    finally:
        stop.set()
        await polling
        await running.stop()


def claude_answer(body: dict):
    """A valid record_insights call built from the context the server sent."""
    context = deal_context(body)
    similar = [d["id"] for d in context["similar_closed_deals"]]
    score = context["score"]["win_probability"]
    return tool_reply({
        "insights": [
            {"type": "opportunity", "title": "Learn from the closest win",
             "description": f"{len(similar)} similar closed deals; the score is {score}.", "confidence": 0.6,
             "actions": ["Review the closest won deal with the team"],
             "evidence": {"factor_names": ["similar_closed_deals"], "similar_deal_ids": similar[:1]}},
        ],
        "win_probability": score,
        "win_probability_reasoning": f"The calibrated score, {score}.",
    }, input_tokens=2100, output_tokens=350)


@on_session_loop
async def test_claude_generator_over_the_wire(models, tmp_path, monkeypatch):
    with FakeAnthropic() as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)  # the SDK's own setting
        model = "claude-sonnet-4-6"
        running = await start(make_registry(models), tmp_path / "data", anthropic_api_key="test-key",
                              anthropic_model=model)
        try:
            now = datetime.now(UTC)
            records = [shifted(r, now - timedelta(days=1)) for r in synth_deals(40, seed=71)]
            await upsert(running, "llm", records)
            target = next(r for r in records if r.outcome is Outcome.OPEN)
            request = insight_pb2.GenerateInsightsRequest(deal=as_open(target, "llm"))
            api.script(claude_answer)
            response = await running.stub.GenerateInsights(request)
            assert response.generator == f"claude:{model}" and not response.fallback_reason
            assert (response.usage.input_tokens, response.usage.output_tokens) == (2100, 350)
            assert response.usage.latency_ms > 0
            assert response.insights[0].evidence.factor_names == ["similar_closed_deals"]
            row = running.insight.engine.ledger.insight_set("llm", response.insight_set_id)
            assert (row.generator, row.input_tokens, row.output_tokens) == (f"claude:{model}", 2100, 350)
            assert (await running.stub.GenerateInsights(request)).cached and len(api.requests) == 1

            api.script(status_reply(429, retry_after=30))
            limited = await running.stub.GenerateInsights(
                insight_pb2.GenerateInsightsRequest(deal=as_open(target, "llm"), bypass_cache=True))
            assert limited.generator == "rules"
            assert limited.fallback_reason == "rate limited by the Anthropic API (HTTP 429); retry after 30 s"
            row = running.insight.engine.ledger.insight_set("llm", limited.insight_set_id)
            assert (row.requested_generator, row.fallback_reason) == (f"claude:{model}", limited.fallback_reason)
            # The Claude set stays cached; a fallback set is not cached, so the next identical
            # request tries Claude again (here it is still cooling down: no API call).
            assert (await running.stub.GenerateInsights(request)).insight_set_id == response.insight_set_id
            changed = insight_pb2.GenerateInsightsRequest(deal=as_open(replace(target, notes="new notes"), "llm"))
            first = await running.stub.GenerateInsights(changed)
            second = await running.stub.GenerateInsights(changed)
            assert first.fallback_reason.startswith("rate limited by the Anthropic API; not calling it for ")
            assert not second.cached and second.insight_set_id != first.insight_set_id
            assert len(api.requests) == 2
            generators = {q.generator for q in running.insight.engine.ledger.quality("llm")}
            assert generators == {f"claude:{model}", "rules"}
        finally:
            await running.stop()


def test_real_server_process(models, tmp_path):
    """`vectoros serve` with the insight service registered in server/app.py: insights,
    feedback, outcome; after a restart on the same data dir the ledger still has them."""
    data = tmp_path / "data"
    args = ("--models", str(models), "--data-dir", str(data))
    env = {"ANTHROPIC_API_KEY": "", "VECTOROS_MODEL_POLL_SECONDS": "0.5"}
    record = replace(synth_deals(1, seed=81)[0], workspace_id="proc")
    proc = start_server(*args, env=env)
    try:
        with proc.channel() as channel:
            stub = insight_pb2_grpc.InsightServiceStub(channel)
            request = insight_pb2.GenerateInsightsRequest(deal=as_open(record, "proc"))
            response = stub.GenerateInsights(request, timeout=60)
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="vectoros.v1.InsightService"), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            assert response.generator == "rules" and response.scorer.version == 1
            feedback = insight_pb2.RecordFeedbackRequest(
                workspace_id="proc", insight_set_id=response.insight_set_id,
                rating=insight_pb2.FEEDBACK_RATING_HELPFUL, idempotency_key="restart-1")
            assert not stub.RecordFeedback(feedback, timeout=10).duplicate
            outcome = insight_pb2.RecordOutcomeRequest(
                workspace_id="proc", deal_id=record.deal_id, outcome=common_pb2.DEAL_OUTCOME_LOST)
            assert not stub.RecordOutcome(outcome, timeout=30).duplicate
    finally:
        assert proc.terminate() == 0
    proc = start_server(*args, env=env)
    try:
        with proc.channel() as channel:
            stub = insight_pb2_grpc.InsightServiceStub(channel)
            assert stub.RecordFeedback(feedback, timeout=10).duplicate
            assert stub.RecordOutcome(outcome, timeout=30).duplicate
            assert stub.GenerateInsights(request, timeout=60).insight_set_id == response.insight_set_id
    finally:
        assert proc.terminate() == 0
