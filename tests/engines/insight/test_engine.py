"""The Insight engine end to end below the wire: a real scorer (trained here on
synthetic deals, published, loaded by the registry), the real similarity engine
over Qdrant Edge on disk, the SQLite ledger, and the rules generator. The
embedder gives each text a unit vector seeded by its hash (as in
tests/engines/test_similarity.py): these tests are about context assembly,
the history index, the cache and the ledger, not about what is similar."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from server.engines.insight import (
    HistoryAggregate,
    HistoryIndex,
    InsightEngine,
    InsightType,
    ModelRef,
    Rating,
    StoredDeal,
    context_key,
    summarize_history,
)
from server.engines.insight.rules import RulesGenerator
from server.engines.scoring import load_scorer
from server.engines.similarity import Query, SimilarityEngine
from server.ledger import Ledger
from server.models.publish import publish
from server.models.registry import ModelRegistry
from server.stores.edge import EdgeStore
from tests.support.fakes import Embedders, HashEmbedder
from training.records import write_deals
from training.scorer import TrainConfig, train_scorer
from training.synth import DATE_COLUMNS, synth_deals
from vectoros.core.deal_text import deal_to_text
from vectoros.core.deals import DealRecord, Outcome
from vectoros.core.errors import InvalidInput, NotFound

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)

DIM = 32
TINY = TrainConfig(folds=2, grid=({"max_depth": 3, "learning_rate": 0.2, "min_child_weight": 1},), max_trees=40,
                   progress=False, golden_rows=4)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scorer")
    data = write_deals(synth_deals(400, seed=5), folder / "deals.jsonl", custom_dates=DATE_COLUMNS)
    result = train_scorer(data, folder / "artifact", TINY)
    publish(result.out_dir, folder / "models")
    made = ModelRegistry(folder / "models", {"scorer": load_scorer})
    made.refresh(notify=False)
    return made


@pytest.fixture
def parts(tmp_path, registry):
    store = EdgeStore(tmp_path / "vectors")
    embedder = HashEmbedder(1, DIM, salted=False)
    similarity = SimilarityEngine(store, Embedders(embedder))
    similarity.open()
    ledger = Ledger.in_dir(tmp_path)
    history = HistoryIndex(similarity)
    engine = InsightEngine(registry, similarity, ledger, RulesGenerator(), history)
    yield engine, embedder
    history.close()
    similarity.close()
    store.close()
    ledger.close()


def workspace_deals(workspace: str, count: int = 120, seed: int = 1) -> list[DealRecord]:
    return [replace(r, workspace_id=workspace, snapshot_at=None) for r in synth_deals(count, seed=seed)]


def live(record: DealRecord, now: datetime) -> DealRecord:
    """An open deal as a request carries it, as of `now`."""
    return replace(record, outcome=Outcome.OPEN, closed_at=None, snapshot_at=now)


async def store(engine: InsightEngine, workspace: str, records) -> None:
    for start in range(0, len(records), 200):
        await engine.similarity.upsert(workspace, records[start : start + 200])


async def test_generate_assembles_context_and_stores_the_set(parts):
    engine, _ = parts
    records = workspace_deals("acme")
    await store(engine, "acme", records)
    target = next(r for r in records if r.outcome is Outcome.OPEN)
    now = target.created_at + timedelta(days=60)
    result = await engine.generate(live(target, now))
    assert not result.cached and result.scorer.version == 1 and result.embedder.version == 1
    assert result.generated.generator == "rules"
    assert result.generated.insights[-1].type is InsightType.PREDICTION

    row = engine.ledger.insight_set("acme", result.insight_set_id)
    context = json.loads(row.context_json)
    closed = {r.deal_id: r for r in records if r.outcome is not Outcome.OPEN}
    similar = context["similar_closed_deals"]
    assert 0 < len(similar) <= 10
    for entry in similar:  # only closed deals of the workspace, with their stored outcomes
        assert closed[entry["id"]].outcome.value == entry["outcome"]
    # The workspace history is exactly what the stored deals say.
    expected = summarize_history([StoredDeal.from_record(replace(r, workspace_id="acme")) for r in records])
    history = context["workspace_history"]
    assert history["closed_deals"] == expected.overall.closed
    assert history["win_rate"]["won"] == expected.overall.won
    assert row.model_win_probability == pytest.approx(
        engine.registry.select("scorer").model.score([live(target, now)])[0].win_probability
    )
    assert row.deal_id == target.deal_id and row.generator == "rules"


async def test_identical_context_hits_the_cache(parts):
    engine, embedder = parts
    records = workspace_deals("cache", 60, seed=2)
    await store(engine, "cache", records)
    target = live(records[0], datetime(2025, 7, 1, 9, tzinfo=UTC))
    first = await engine.generate(target)
    again = await engine.generate(replace(target, snapshot_at=target.snapshot_at + timedelta(hours=3)))
    assert again.cached and again.insight_set_id == first.insight_set_id
    assert again.generated.insights == first.generated.insights
    assert again.generated.usage.input_tokens == 0
    bypass = await engine.generate(target, bypass_cache=True)
    assert not bypass.cached and bypass.insight_set_id != first.insight_set_id
    changed = await engine.generate(replace(target, notes="budget approved"))
    assert not changed.cached
    next_day = await engine.generate(replace(target, snapshot_at=target.snapshot_at + timedelta(days=1)))
    assert not next_day.cached
    assert len(list(engine.ledger.insight_sets("cache"))) == 4


async def test_stored_vector_is_reused_when_the_text_is_unchanged(parts):
    engine, embedder = parts
    records = workspace_deals("reuse", 40, seed=3)
    await store(engine, "reuse", records)
    stored_open = next(r for r in records if r.outcome is Outcome.OPEN)
    now = datetime(2025, 7, 1, tzinfo=UTC)
    before = len(embedder.embedded)
    await engine.generate(live(stored_open, now))
    assert len(embedder.embedded) == before
    edited = replace(live(stored_open, now), notes="prospect went dark")
    await engine.generate(edited)
    assert embedder.embedded[before:] == [deal_to_text(edited)]


async def test_history_follows_writes_incrementally_and_per_workspace(parts):
    engine, _ = parts
    first = workspace_deals("inc", 50, seed=4)
    await store(engine, "inc", first)
    await store(engine, "other", workspace_deals("other", 30, seed=9))
    before = engine.history.history("inc")
    more = [replace(r, deal_id=f"x{r.deal_id}") for r in workspace_deals("inc", 30, seed=6)]
    await store(engine, "inc", more)
    await engine.similarity.delete("inc", [first[0].deal_id, first[1].deal_id])
    after = engine.history.history("inc")
    kept = first[2:] + more
    expected = summarize_history([StoredDeal.from_record(replace(r, workspace_id="inc")) for r in kept])
    assert after.deals == len(kept) and after.generation > before.generation
    assert after.overall == expected.overall
    assert after.by_stage == expected.by_stage and after.days_in_stage == expected.days_in_stage
    # Another workspace's writes do not touch this one.
    await store(engine, "other", workspace_deals("other", 10, seed=10))
    assert engine.history.history("inc") is after


async def test_similar_deals_never_cross_workspaces(parts):
    engine, _ = parts
    mine = workspace_deals("iso-a", 30, seed=11)
    theirs = [replace(r, workspace_id="iso-b") for r in mine]  # same texts, same vectors
    await store(engine, "iso-a", mine[:10])
    await store(engine, "iso-b", theirs)
    result = await engine.generate(live(mine[15], datetime(2025, 7, 1, tzinfo=UTC)))
    context = json.loads(engine.ledger.insight_set("iso-a", result.insight_set_id).context_json)
    assert {d["id"] for d in context["similar_closed_deals"]} <= {r.deal_id for r in mine[:10]}
    assert context["workspace_history"]["stored_deals"] == 10
    assert engine.ledger.insight_set("iso-b", result.insight_set_id) is None


async def test_record_outcome_updates_the_store_and_is_idempotent(parts):
    engine, _ = parts
    records = workspace_deals("out", 40, seed=12)
    await store(engine, "out", records)
    target = next(r for r in records if r.outcome is Outcome.OPEN)
    closed_at = datetime(2025, 7, 3, tzinfo=UTC)
    assert await engine.record_outcome("out", target.deal_id, Outcome.WON, closed_at, 99_000.0) is False
    assert await engine.record_outcome("out", target.deal_id, Outcome.WON, closed_at, 99_000.0) is True
    # The next retrieval sees the deal as won.
    probe = records[0] if records[0].deal_id != target.deal_id else records[1]
    found = await engine.similarity.find("out", Query(deal=replace(probe, deal_id="probe")), top_k=100)
    stored = next(m.deal for m in found.matches if m.deal.deal_id == target.deal_id)
    assert (stored.outcome, stored.closed_at, stored.value) == (Outcome.WON, closed_at, 99_000.0)
    assert engine.ledger.outcome("out", target.deal_id).outcome == "won"
    with pytest.raises(InvalidInput, match="^outcome: "):
        await engine.record_outcome("out", target.deal_id, Outcome.OPEN, None, 0.0)
    with pytest.raises(NotFound, match="^deal_id: "):
        await engine.record_outcome("out", "no-such-deal", Outcome.LOST, None, 0.0)
    with pytest.raises(NotFound):  # another workspace's deal is unknown here
        await engine.record_outcome("elsewhere", target.deal_id, Outcome.LOST, None, 0.0)
    with pytest.raises(InvalidInput, match="^final_value: "):
        await engine.record_outcome("out", target.deal_id, Outcome.WON, None, float("nan"))


async def test_outcome_of_a_deal_only_seen_by_generate_is_stored(parts):
    engine, _ = parts
    await store(engine, "seen", workspace_deals("seen", 30, seed=13))
    fresh = live(replace(workspace_deals("seen", 1, seed=14)[0], deal_id="fresh"), datetime(2025, 7, 1, tzinfo=UTC))
    await engine.generate(fresh)
    await engine.record_outcome("seen", "fresh", Outcome.LOST, datetime(2025, 7, 2, tzinfo=UTC), 0.0)
    found = await engine.similarity.find("seen", Query(deal_id="fresh"), top_k=1)
    assert found.matches  # it is in the store now, as a closed deal
    assert engine.history.history("seen").overall.closed == 1 + sum(
        r.outcome is not Outcome.OPEN for r in workspace_deals("seen", 30, seed=13)
    )


async def test_feedback_rules(parts):
    engine, _ = parts
    await store(engine, "fb", workspace_deals("fb", 30, seed=15))
    result = await engine.generate(live(workspace_deals("fb", 1, seed=16)[0], datetime(2025, 7, 1, tzinfo=UTC)))
    set_id, insight_id = result.insight_set_id, result.generated.insights[0].id
    first = await engine.record_feedback("fb", set_id, insight_id, Rating.HELPFUL, True, "spot on", "key-1")
    again = await engine.record_feedback("fb", set_id, insight_id, Rating.HELPFUL, True, "spot on", "key-1")
    assert (first.duplicate, again.duplicate, again.feedback_id) == (False, True, first.feedback_id)
    # Without a key, identical feedback is recorded once.
    a = await engine.record_feedback("fb", set_id, "", Rating.NOT_HELPFUL, False, "", "")
    b = await engine.record_feedback("fb", set_id, "", Rating.NOT_HELPFUL, False, "", "")
    assert b.duplicate and a.feedback_id == b.feedback_id
    with pytest.raises(InvalidInput, match="^idempotency_key: "):
        await engine.record_feedback("fb", set_id, insight_id, Rating.INCORRECT, True, "", "key-1")
    with pytest.raises(NotFound, match="^insight_set_id: "):
        await engine.record_feedback("fb", "nope", "", Rating.HELPFUL, False, "", "")
    with pytest.raises(NotFound, match="^insight_set_id: "):
        await engine.record_feedback("other-ws", set_id, "", Rating.HELPFUL, False, "", "")
    with pytest.raises(NotFound, match="^insight_id: "):
        await engine.record_feedback("fb", set_id, "i999", Rating.HELPFUL, False, "", "")
    with pytest.raises(InvalidInput, match="^comment: "):
        await engine.record_feedback("fb", set_id, "", Rating.HELPFUL, False, "x" * 5000, "")


async def test_slipped_close_date_uses_the_previous_snapshot(parts):
    engine, _ = parts
    await store(engine, "slip", workspace_deals("slip", 30, seed=17))
    deal = live(workspace_deals("slip", 1, seed=18)[0], datetime(2025, 7, 1, tzinfo=UTC))
    deal = replace(deal, deal_id="slipper", expected_close_at=datetime(2025, 7, 20, tzinfo=UTC))
    await engine.generate(deal)
    later = replace(deal, snapshot_at=datetime(2025, 7, 8, tzinfo=UTC),
                    expected_close_at=datetime(2025, 8, 19, tzinfo=UTC))
    result = await engine.generate(later)
    slipped = [i for i in result.generated.insights if "slipped" in i.title]
    assert slipped and "2025-07-20 to 2025-08-19 (30 days later)" in slipped[0].description


def test_history_aggregate_add_and_remove_match_a_fresh_summary():
    rng = np.random.default_rng(0)
    deals = [StoredDeal.from_record(r) for r in workspace_deals("agg", 300, seed=19)]
    aggregate = HistoryAggregate()
    present: list[StoredDeal] = []
    for step in range(600):
        if present and rng.random() < 0.35:
            aggregate.remove(present.pop(int(rng.integers(len(present)))))
        else:
            deal = deals[step % len(deals)]
            aggregate.add(deal)
            present.append(deal)
    assert aggregate.summary() == summarize_history(present)
    stays = [days for d in present for stage, days in d.stays if stage == "discovery"]
    stat = aggregate.summary().days_in_stage["discovery"]
    np.testing.assert_allclose([stat.median, stat.p75, stat.p90], np.percentile(stays, [50, 75, 90]))


def test_context_key_ignores_map_order_and_snapshot_time():
    record = workspace_deals("keys", 1, seed=23)[0]
    reordered = replace(
        record,
        numeric_attributes=dict(reversed(list({**record.numeric_attributes, "a": 1.0}.items()))),
        snapshot_at=datetime(2025, 7, 1, 8, tzinfo=UTC),
    )
    record = replace(record, numeric_attributes={**record.numeric_attributes, "a": 1.0})
    scorer, embedder, now = ModelRef("scorer", 1), ModelRef("embedder", 1), datetime(2025, 7, 1, 9, tzinfo=UTC)
    assert list(record.numeric_attributes) != list(reordered.numeric_attributes)
    assert context_key(record, scorer, embedder, "rules", now) == context_key(reordered, scorer, embedder, "rules", now)
    assert context_key(record, scorer, embedder, "rules", now) != context_key(
        record, ModelRef("scorer", 2), embedder, "rules", now)
