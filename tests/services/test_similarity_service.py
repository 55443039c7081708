"""SimilarityService over a real channel, with the real embedder (all-MiniLM-L6-v2
exported to ONNX, cached by `training.embedder.cached_export`) and the real
Qdrant Edge store on disk: upsert / find / delete / stats, filters, isolation,
errors, restart persistence, and kill -9 right after an acknowledged upsert."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from server.config import ServerConfig
from server.interceptors import ErrorAndLogInterceptor
from server.models.publish import publish
from server.models.registry import ModelRegistry
from server.services.similarity import add_similarity_service
from training import embedder as embedder_export
from vectoros.core.embedder import load_embedder
from vectoros.v1 import common_pb2, similarity_pb2, similarity_pb2_grpc

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)

# The servers are fixtures on the session loop; the tests must run on it too.
on_session_loop = pytest.mark.asyncio(loop_scope="session")
WON, LOST, OPEN = common_pb2.DEAL_OUTCOME_WON, common_pb2.DEAL_OUTCOME_LOST, common_pb2.DEAL_OUTCOME_OPEN

# Three kinds of deal whose notes a sentence model should tell apart.
TOPICS = {
    "health": (
        "hospital",
        "Hospital group digitising patient records; clinicians want faster charting and HIPAA audit trails.",
    ),
    "logistics": ("freight", "Freight carrier optimising truck routes and warehouse loading docks to cut fuel costs."),
    "education": (
        "school",
        "School district rolling out a learning platform for teachers, homework and student grades.",
    ),
}


def deal(i: int, topic: str, outcome: int, value: float = 50_000.0, **fields) -> common_pb2.Deal:
    word, notes = TOPICS[topic]
    return common_pb2.Deal(
        id=f"{topic}-{i}",
        name=f"{word.title()} deal {i}",
        company=f"{word.title()} Co {i}",
        industry=topic,
        stage="proposal" if i % 2 else "negotiation",
        notes=f"{notes} Deal number {i}.",
        value=value + 1_000 * i,
        currency="USD",
        outcome=outcome,
        **fields,
    )


def catalogue() -> list[common_pb2.Deal]:
    deals = []
    for topic in TOPICS:
        for i in range(8):
            deals.append(deal(i, topic, (WON, LOST, OPEN, WON)[i % 4]))
    return deals


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    publish(embedder_export.cached_export(), root)
    return root


@pytest.fixture(scope="module")
def registry(models) -> ModelRegistry:
    made = ModelRegistry(models, {"embedder": load_embedder})
    made.refresh(notify=False)
    return made


class Running:
    def __init__(self, server, service, channel) -> None:
        self.server = server
        self.service = service
        self.channel = channel
        self.stub = similarity_pb2_grpc.SimilarityServiceStub(channel)

    async def stop(self) -> None:
        await self.channel.close()
        await self.server.stop(None)
        self.service.close()


async def start(registry, data_dir: Path, **settings) -> Running:
    server = grpc.aio.server(interceptors=[ErrorAndLogInterceptor()])
    service = await add_similarity_service(server, registry, ServerConfig(data_dir=data_dir, **settings))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return Running(server, service, grpc.aio.insecure_channel(f"127.0.0.1:{port}"))


@pytest.fixture
async def running(registry, tmp_path):
    made = await start(registry, tmp_path / "data")
    yield made
    await made.stop()


@pytest.fixture(scope="module")
async def shared(registry, tmp_path_factory):
    """One server for the tests that only send bad requests."""
    made = await start(registry, tmp_path_factory.mktemp("shared") / "data")
    yield made
    await made.stop()


async def upsert(stub, workspace, deals):
    return await stub.UpsertDeals(similarity_pb2.UpsertDealsRequest(workspace_id=workspace, deals=deals))


async def find(stub, workspace, **fields):
    return await stub.FindSimilarDeals(similarity_pb2.FindSimilarDealsRequest(workspace_id=workspace, **fields))


@on_session_loop
async def test_upsert_find_delete_stats(running):
    stub = running.stub
    first = await upsert(stub, "acme", catalogue())
    assert (first.upserted, first.unchanged) == (24, 0)
    assert (first.embedder.name, first.embedder.version) == ("embedder", 1)
    again = await upsert(stub, "acme", catalogue())
    assert (again.upserted, again.unchanged) == (24, 24)

    # The nearest deals to a stored health deal are the other health deals.
    result = await find(stub, "acme", deal_id="health-3", top_k=7)
    assert [m.deal.industry for m in result.matches] == ["health"] * 7
    assert "health-3" not in [m.deal.id for m in result.matches]
    scores = [m.score for m in result.matches]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    # Stored fields and outcome come back as sent (the workspace filled in).
    sent = {d.id: d for d in catalogue()}
    for match in result.matches:
        expected = common_pb2.Deal()
        expected.CopyFrom(sent[match.deal.id])
        expected.workspace_id = "acme"
        expected.activity_counts.SetInParent()
        assert match.deal == expected
    won = sum(1 for m in result.matches if m.deal.outcome == WON)
    lost = sum(1 for m in result.matches if m.deal.outcome == LOST)
    summary = result.summary
    assert (summary.won_count, summary.lost_count, summary.open_count) == (won, lost, 7 - won - lost)
    won_weight = sum(max(m.score, 0) for m in result.matches if m.deal.outcome == WON)
    lost_weight = sum(max(m.score, 0) for m in result.matches if m.deal.outcome == LOST)
    assert summary.weighted_win_rate == pytest.approx(won_weight / (won_weight + lost_weight), abs=1e-6)
    assert summary.mean_score == pytest.approx(sum(scores) / 7, abs=1e-6)

    # Free text and an unstored deal land on the matching topic too.
    by_text = await find(stub, "acme", text="trucks, routes and warehouses", top_k=3)
    assert [m.deal.industry for m in by_text.matches] == ["logistics"] * 3
    probe = deal(99, "education", OPEN)
    by_deal = await find(stub, "acme", deal=probe, top_k=3)
    assert [m.deal.industry for m in by_deal.matches] == ["education"] * 3

    stats = await stub.GetStats(similarity_pb2.GetStatsRequest(workspace_id="acme"))
    assert stats.total_deals == 24
    assert {c.outcome: c.count for c in stats.by_outcome} == {WON: 12, LOST: 6, OPEN: 6}
    deleted = await stub.DeleteDeals(
        similarity_pb2.DeleteDealsRequest(workspace_id="acme", deal_ids=["health-0", "health-1", "unknown"])
    )
    assert deleted.deleted == 2
    assert (await stub.GetStats(similarity_pb2.GetStatsRequest(workspace_id="acme"))).total_deals == 22
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await find(stub, "acme", deal_id="health-0")
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


@on_session_loop
async def test_search_hnsw_ef_reaches_the_store_and_searches_still_answer(registry, tmp_path):
    made = await start(registry, tmp_path / "data", search_hnsw_ef=16)
    try:
        assert made.service.engine.hnsw_ef == 16
        await upsert(made.stub, "acme", catalogue())
        result = await find(made.stub, "acme", deal_id="health-3", top_k=5)
        assert [m.deal.industry for m in result.matches] == ["health"] * 5
    finally:
        await made.stop()


@on_session_loop
async def test_filters_over_the_wire(running):
    stub = running.stub
    await upsert(stub, "acme", catalogue())
    request = similarity_pb2.SimilarityFilter(
        industries=["health", "education"],
        outcomes=[WON, LOST],
        stages=["proposal"],
        min_value=52_000,
        max_value=56_000,
    )
    result = await find(stub, "acme", text="hospital records", filter=request, top_k=100)
    assert result.matches
    for match in result.matches:
        d = match.deal
        assert d.industry in ("health", "education") and d.outcome in (WON, LOST) and d.stage == "proposal"
        assert 52_000 <= d.value <= 56_000
    expected = {
        d.id
        for d in catalogue()
        if d.industry in ("health", "education")
        and d.outcome in (WON, LOST)
        and d.stage == "proposal"
        and 52_000 <= d.value <= 56_000
    }
    assert {m.deal.id for m in result.matches} == expected
    # A threshold between the best and the second-best score keeps the best alone.
    best, second = result.matches[0].score, result.matches[1].score
    assert best > second
    high = await find(stub, "acme", text="hospital records", filter=request, top_k=100, min_score=(best + second) / 2)
    assert [m.deal.id for m in high.matches] == [result.matches[0].deal.id]


@on_session_loop
async def test_isolation_over_the_wire(running):
    stub = running.stub
    await upsert(stub, "acme", catalogue()[:8])  # health deals
    theirs = [deal(i, "logistics", WON) for i in range(8)]
    for d in theirs:
        d.id = d.id.replace("logistics", "health")  # the same ids as acme's, other content
    theirs.append(deal(50, "logistics", WON))
    await upsert(stub, "globex", theirs)

    result = await find(stub, "acme", text="freight trucks and warehouses", top_k=100)
    assert len(result.matches) == 8 and all(m.deal.workspace_id == "acme" for m in result.matches)
    assert all(m.deal.industry == "health" for m in result.matches)
    every_filter = similarity_pb2.SimilarityFilter(
        industries=["logistics", "health"],
        stages=["proposal", "negotiation"],
        outcomes=[WON, LOST, OPEN],
        min_value=0,
        max_value=1e12,
    )
    result = await find(stub, "acme", text="freight", filter=every_filter, top_k=100)
    assert {m.deal.workspace_id for m in result.matches} == {"acme"}

    for workspace_id, deal_id in (("acme", "logistics-50"), ("acme", "nobody-has-this")):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await find(stub, workspace_id, deal_id=deal_id)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        assert "globex" not in error.value.details()

    deleted = await stub.DeleteDeals(similarity_pb2.DeleteDealsRequest(workspace_id="acme", deal_ids=["logistics-50"]))
    assert deleted.deleted == 0
    stats = await stub.GetStats(similarity_pb2.GetStatsRequest(workspace_id="globex"))
    assert stats.total_deals == 9
    assert (await stub.GetStats(similarity_pb2.GetStatsRequest(workspace_id="acme"))).total_deals == 8

    forged = deal(1, "health", WON, workspace_id="globex")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await upsert(stub, "acme", [forged])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("deals[0].workspace_id:")
    assert (await stub.GetStats(similarity_pb2.GetStatsRequest(workspace_id="globex"))).total_deals == 9


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"workspace_id": "", "text": "x"}, "workspace_id"),
        ({"workspace_id": "acme"}, "query"),
        ({"workspace_id": "acme", "text": "x", "top_k": 101}, "top_k"),
        ({"workspace_id": "acme", "text": "x", "min_score": 1.5}, "min_score"),
        ({"workspace_id": "acme", "text": "x", "min_score": float("nan")}, "min_score"),
        ({"workspace_id": "acme", "deal_id": ""}, "deal_id"),
        ({"workspace_id": "acme", "text": "x", "filter": {"min_value": 5, "max_value": 1}}, "filter.max_value"),
        ({"workspace_id": "acme", "text": "x", "filter": {"outcomes": [9]}}, "filter.outcomes[0]"),
        ({"workspace_id": "acme", "deal": {"id": "d", "value": -1}}, "deal.value"),
    ],
)
@on_session_loop
async def test_bad_find_requests_name_the_field(shared, request_fields, field):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await find(
            shared.stub,
            **{k: v for k, v in request_fields.items() if k != "workspace_id"},
            workspace=request_fields["workspace_id"],
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(f"{field}:")


@on_session_loop
async def test_bad_writes_name_the_field(shared):
    stub = shared.stub
    cases = [
        (upsert(stub, "acme", []), "deals:"),
        (upsert(stub, "acme", [common_pb2.Deal(id=f"d{i}") for i in range(257)]), "deals:"),
        (upsert(stub, "acme", [common_pb2.Deal(id="")]), "deals[0].id:"),
        (upsert(stub, "acme", [common_pb2.Deal(id="a"), common_pb2.Deal(id="a")]), "deals[1].id:"),
        (stub.DeleteDeals(similarity_pb2.DeleteDealsRequest(workspace_id="acme")), "deal_ids:"),
        (stub.DeleteDeals(similarity_pb2.DeleteDealsRequest(workspace_id="", deal_ids=["a"])), "workspace_id:"),
        (stub.GetStats(similarity_pb2.GetStatsRequest()), "workspace_id:"),
    ]
    for call, prefix in cases:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details().startswith(prefix), error.value.details()


@on_session_loop
async def test_deals_survive_a_restart(registry, tmp_path):
    first = await start(registry, tmp_path / "data")
    await upsert(first.stub, "acme", catalogue())
    await first.stop()
    second = await start(registry, tmp_path / "data")
    try:
        result = await find(second.stub, "acme", deal_id="education-2", top_k=5)
        assert [m.deal.industry for m in result.matches] == ["education"] * 5
        assert (await upsert(second.stub, "acme", catalogue())).unchanged == 24
    finally:
        await second.stop()


@on_session_loop
async def test_maintenance_indexes_the_embedded_store_while_it_serves(running):
    await upsert(running.stub, "acme", catalogue())
    engine = running.service.engine
    changes = []
    running.service.add_listener(lambda: changes.append(engine.serving()[0].name))
    stop = asyncio.Event()
    task = asyncio.create_task(running.service.maintain(stop, interval=0.05, threshold=10))
    try:
        for _ in range(600):
            if engine.serving()[0].name != "embedder-v1":
                break
            # Requests keep being answered while the copy is made and indexed.
            result = await find(running.stub, "acme", deal_id="health-3", top_k=3)
            assert [m.deal.industry for m in result.matches] == ["health"] * 3
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    assert engine.serving()[0].name.startswith("embedder-v1-g")
    assert changes and changes[0] == "embedder-v1-g1"  # health hears of the switch
    result = await find(running.stub, "acme", deal_id="health-3", top_k=7)
    assert [m.deal.industry for m in result.matches] == ["health"] * 7
    assert (await running.stub.GetStats(similarity_pb2.GetStatsRequest(workspace_id="acme"))).total_deals == 24


@on_session_loop
async def test_a_new_embedder_version_is_reindexed_by_the_server(tmp_path):
    models, data_dir = tmp_path / "models", tmp_path / "data"
    artifact = embedder_export.cached_export()
    publish(artifact, models)
    first = ModelRegistry(models, {"embedder": load_embedder})
    first.refresh(notify=False)
    old = await start(first, data_dir)
    await upsert(old.stub, "acme", catalogue())
    await old.stop()

    publish(artifact, models, force=True)  # version 2 (the same weights: a new collection all the same)
    registry = ModelRegistry(models, {"embedder": load_embedder})
    registry.refresh(notify=False)  # a fresh start loads production (v2)...
    new = await start(registry, data_dir)
    try:
        # ...and the service keeps v1 loaded for v1's collection until the reindex.
        before = await find(new.stub, "acme", deal_id="health-3", top_k=7)
        assert before.embedder.version == 1
        assert sorted(registry.status("embedder").loaded_versions) == [1, 2]
        stop = asyncio.Event()
        task = asyncio.create_task(new.service.maintain(stop, interval=0.05, reindex=True))
        try:
            for _ in range(600):
                if new.service.engine.serving()[1].version == 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task
        result = await find(new.stub, "acme", deal_id="health-3", top_k=7)
        assert result.embedder.version == 2
        assert [m.deal.industry for m in result.matches] == ["health"] * 7
        stats = await new.stub.GetStats(similarity_pb2.GetStatsRequest(workspace_id="acme"))
        assert (stats.total_deals, stats.embedder.version) == (24, 2)
    finally:
        await new.stop()


def test_the_real_server_keeps_acknowledged_deals_through_kill_9(models, tmp_path):
    """`vectoros serve` itself, killed with SIGKILL right after UpsertDeals returned
    (skipped while server.app does not register the service)."""
    from tests.support.serverproc import start_server

    args = ("--data-dir", str(tmp_path / "data"), "--models", str(models))
    server = start_server(*args)
    try:
        with server.channel() as channel:
            stub = similarity_pb2_grpc.SimilarityServiceStub(channel)
            stub.GetStats(similarity_pb2.GetStatsRequest(workspace_id="acme"), timeout=30)
            response = stub.UpsertDeals(similarity_pb2.UpsertDealsRequest(workspace_id="acme", deals=catalogue()))
            assert response.upserted == 24
    finally:
        server.process.kill()
        server.process.wait(30)
    server = start_server(*args)
    try:
        with server.channel() as channel:
            stub = similarity_pb2_grpc.SimilarityServiceStub(channel)
            stats = stub.GetStats(similarity_pb2.GetStatsRequest(workspace_id="acme"), timeout=30)
            assert stats.total_deals == 24
            request = similarity_pb2.FindSimilarDealsRequest(workspace_id="acme", deal_id="education-1", top_k=3)
            result = stub.FindSimilarDeals(request, timeout=30)
            assert [m.deal.industry for m in result.matches] == ["education"] * 3
    finally:
        server.terminate()


@on_session_loop
async def test_stopping_cancels_a_rebuild_and_leaves_the_store_as_it_was(running):
    await upsert(running.stub, "acme", catalogue())
    engine = running.service.engine
    changes = []
    running.service.add_listener(lambda: changes.append(engine.serving()[0].name))
    stop = asyncio.Event()
    task = asyncio.create_task(running.service.maintain(stop, interval=0.01, threshold=10))
    for _ in range(500):
        if engine._rebuilding:
            break
        await asyncio.sleep(0.005)
    assert engine._rebuilding
    stop.set()
    await asyncio.wait_for(task, 10)
    assert not engine._rebuilding and changes == []
    assert engine.serving()[0].name == "embedder-v1"
    assert [c.name for c in engine.store.list_collections()] == ["embedder-v1"]
    assert (await running.stub.GetStats(similarity_pb2.GetStatsRequest(workspace_id="acme"))).total_deals == 24
