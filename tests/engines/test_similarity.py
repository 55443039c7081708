"""The Similarity engine over real stores (Qdrant Edge on disk and qdrant-client's
in-memory mode). The embedder here gives each text a random unit vector seeded by
its SHA-256: these tests are about storage, isolation and summaries, not about
what the model thinks is similar (the servicer tests use the real model)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from server.engines.similarity import (
    CLOSED,
    Match,
    Query,
    SimilarityEngine,
    summarize,
)
from server.stores.base import DealFilter
from server.stores.edge import EdgeStore
from server.stores.remote import RemoteStore
from tests.support.fakes import Embedders, HashEmbedder
from vectoros.core.deal_codec.payload import record_from_json, record_to_json
from vectoros.core.deal_text import deal_to_text
from vectoros.core.deals import DealRecord, Outcome, StageChange
from vectoros.core.errors import FailedPrecondition, InvalidInput, NotFound, Unavailable

DIM = 24
INDUSTRIES = ("software", "retail", "health")
STAGES = ("discovery", "proposal", "negotiation")


def deal(i: int, workspace: str = "", **changes) -> DealRecord:
    record = DealRecord(
        deal_id=f"d{i}",
        workspace_id=workspace,
        name=f"Deal {i}",
        company=f"Company {i % 17}",
        industry=INDUSTRIES[i % 3],
        region="emea",
        notes=f"notes for deal {i}",
        value=1_000.0 * (i + 1),
        currency="USD",
        stage=STAGES[(i // 3) % 3],
        outcome=(Outcome.OPEN, Outcome.WON, Outcome.LOST)[(i // 9) % 3],
    )
    return replace(record, **changes)


@pytest.fixture(params=["edge", "remote"])
def store(request, tmp_path):
    made = EdgeStore(tmp_path / "vectors") if request.param == "edge" else RemoteStore.in_memory()
    yield made
    made.close()


@pytest.fixture
def embedder():
    return HashEmbedder(1, DIM)


@pytest.fixture
def engine(store, embedder):
    made = SimilarityEngine(store, Embedders(embedder))
    made.open()
    yield made
    made.close()


def brute_force(embedder, records, query_vector, exclude=(), limit=10, keep=lambda r: True):
    candidates = [r for r in records if r.deal_id not in exclude and keep(r)]
    scores = np.array([embedder.vector(deal_to_text(r)) @ query_vector for r in candidates])
    order = np.argsort(-scores, kind="stable")[:limit]
    return [candidates[i].deal_id for i in order], scores[order]


async def test_upsert_is_idempotent_and_skips_unchanged_text(engine, embedder):
    records = [deal(i) for i in range(30)]
    first = await engine.upsert("acme", records)
    assert (first.upserted, first.unchanged, first.embedder.version) == (30, 0, 1)
    assert len(embedder.embedded) == 30

    again = await engine.upsert("acme", records)
    assert (again.upserted, again.unchanged) == (30, 30)
    assert len(embedder.embedded) == 30  # nothing re-embedded

    # Won now: not part of the text, so no new vector, but the stored outcome moves.
    # New notes: re-embedded.
    changed = [replace(records[0], outcome=Outcome.WON), replace(records[1], notes="a new story")]
    result = await engine.upsert("acme", changed)
    assert (result.upserted, result.unchanged) == (2, 1)
    assert embedder.embedded[-1] == deal_to_text(changed[1])
    stats = await engine.stats("acme")
    assert stats.total == 30
    expected_won = sum(1 for r in records[2:] if r.outcome is Outcome.WON) + 1
    assert stats.by_outcome[Outcome.WON] == expected_won


async def test_find_by_stored_id_matches_brute_force(engine, embedder):
    records = [deal(i) for i in range(40)]
    await engine.upsert("acme", records)
    result = await engine.find("acme", Query(deal_id="d7"), top_k=12)
    stored = [replace(r, workspace_id="acme") for r in records]
    query_vector = embedder.vector(deal_to_text(records[7]))
    expected_ids, expected_scores = brute_force(embedder, stored, query_vector, exclude={"d7"}, limit=12)
    assert [m.deal.deal_id for m in result.matches] == expected_ids
    np.testing.assert_allclose([m.score for m in result.matches], expected_scores, atol=1e-5)
    # Each match carries its stored fields and outcome, exactly as upserted.
    by_id = {r.deal_id: r for r in stored}
    assert all(m.deal == by_id[m.deal.deal_id] for m in result.matches)
    assert result.summary == summarize(result.matches)
    assert result.embedder.version == 1


async def test_find_by_deal_and_by_text(engine, embedder):
    records = [deal(i) for i in range(25)]
    await engine.upsert("acme", records)
    # A stored deal sent by value is excluded too; an unstored one is just embedded.
    by_deal = await engine.find("acme", Query(deal=records[3]), top_k=5)
    assert "d3" not in [m.deal.deal_id for m in by_deal.matches] and len(by_deal.matches) == 5
    probe = deal(99, notes="something else entirely")
    fresh = await engine.find("acme", Query(deal=probe), top_k=5)
    expected, _ = brute_force(embedder, records, embedder.vector(deal_to_text(probe)), limit=5)
    assert [m.deal.deal_id for m in fresh.matches] == expected
    by_text = await engine.find("acme", Query(text="renewal with procurement"), top_k=3)
    expected, _ = brute_force(embedder, records, embedder.vector("renewal with procurement"), limit=3)
    assert [m.deal.deal_id for m in by_text.matches] == expected


async def test_filters_and_min_score(engine, embedder):
    records = [deal(i) for i in range(60)]
    await engine.upsert("acme", records)
    deal_filter = DealFilter(
        industries=("software", "health"), stages=("proposal",), outcomes=("won", "lost"), min_value=5_000.0
    )
    result = await engine.find("acme", Query(deal_id="d1"), deal_filter=deal_filter, top_k=100)

    def keep(r):
        return (
            r.industry in deal_filter.industries
            and r.stage in deal_filter.stages
            and r.outcome.value in deal_filter.outcomes
            and r.value >= 5_000.0
        )

    query_vector = embedder.vector(deal_to_text(records[1]))
    expected, scores = brute_force(embedder, records, query_vector, exclude={"d1"}, limit=100, keep=keep)
    assert [m.deal.deal_id for m in result.matches] == expected and expected
    middle = len(scores) // 2
    threshold = float(scores[middle] + scores[middle + 1]) / 2  # away from float ties
    above = await engine.find("acme", Query(deal_id="d1"), deal_filter=deal_filter, top_k=100, min_score=threshold)
    assert [m.deal.deal_id for m in above.matches] == [
        d for d, s in zip(expected, scores, strict=True) if s >= threshold
    ]


async def test_delete(engine):
    await engine.upsert("acme", [deal(i) for i in range(10)])
    assert await engine.delete("acme", ["d1", "d2", "d2", "nope"]) == 2
    assert (await engine.stats("acme")).total == 8
    with pytest.raises(NotFound):
        await engine.find("acme", Query(deal_id="d1"))
    assert await engine.delete("acme", ["d1"]) == 0


async def test_a_workspace_never_sees_changes_or_counts_another(engine, embedder):
    """Adversarial: the same deal ids in two workspaces, with different content."""
    acme = [deal(i) for i in range(20)]
    globex = [deal(i, industry="globex-only", notes=f"globex secret {i}", outcome=Outcome.WON) for i in range(30)]
    globex.append(deal(500, industry="globex-only"))  # an id acme does not have
    await engine.upsert("acme", acme)
    await engine.upsert("globex", globex)

    # Stats count only the workspace's own deals.
    assert (await engine.stats("acme")).total == 20
    assert (await engine.stats("globex")).total == 31
    assert (await engine.stats("umbrella")).total == 0

    # By id: acme's d3 is acme's vector, never globex's d3; globex's d500 is not found,
    # with the same message as an id nobody has.
    result = await engine.find("acme", Query(deal_id="d3"), top_k=100)
    assert {m.deal.workspace_id for m in result.matches} == {"acme"}
    assert len(result.matches) == 19
    expected, _ = brute_force(embedder, acme, embedder.vector(deal_to_text(acme[3])), exclude={"d3"}, limit=100)
    assert [m.deal.deal_id for m in result.matches] == expected
    with pytest.raises(NotFound) as theirs:
        await engine.find("acme", Query(deal_id="d500"))
    with pytest.raises(NotFound) as nobody:
        await engine.find("acme", Query(deal_id="d999"))
    assert theirs.value.message.replace("d500", "X") == nobody.value.message.replace("d999", "X")

    # Filters naming only globex's values find nothing in acme, whatever they try.
    for deal_filter in (
        DealFilter(industries=("globex-only",)),
        DealFilter(outcomes=("won",), industries=("globex-only", "software")),
        DealFilter(min_value=0.0, max_value=1e12, stages=STAGES, industries=(*INDUSTRIES, "globex-only")),
    ):
        found = await engine.find("acme", Query(text="globex secret 3"), deal_filter=deal_filter, top_k=100)
        assert all(m.deal.workspace_id == "acme" for m in found.matches)
        assert not any("globex" in m.deal.notes for m in found.matches)

    # Deleting through acme with ids globex has removes acme's, never globex's.
    assert await engine.delete("acme", ["d500"]) == 0
    assert await engine.delete("acme", ["d1", "d2"]) == 2
    assert (await engine.stats("globex")).total == 31
    globex_d1 = await engine.find("globex", Query(deal_id="d2"), top_k=1)
    assert globex_d1.matches[0].deal.workspace_id == "globex"

    # A deal naming another workspace is refused, not stored anywhere.
    with pytest.raises(InvalidInput, match=r"deals\[0\].workspace_id"):
        await engine.upsert("acme", [deal(7, workspace="globex")])
    with pytest.raises(InvalidInput, match="deal.workspace_id"):
        await engine.find("acme", Query(deal=deal(7, workspace="globex")))
    assert (await engine.stats("globex")).total == 31


async def test_request_rules(engine):
    await engine.upsert("acme", [deal(0)])
    with pytest.raises(InvalidInput, match="workspace_id: required"):
        await engine.stats("")
    with pytest.raises(InvalidInput, match="deals: must hold 1 to 256"):
        await engine.upsert("acme", [])
    with pytest.raises(InvalidInput, match="deals: must hold 1 to 256"):
        await engine.upsert("acme", [deal(i) for i in range(257)])
    with pytest.raises(InvalidInput, match=r"deals\[1\].id: duplicate of deals\[0\].id"):
        await engine.upsert("acme", [deal(0), deal(0)])
    with pytest.raises(InvalidInput, match="deal_ids: must hold 1 to 1000"):
        await engine.delete("acme", [])
    with pytest.raises(InvalidInput, match="top_k"):
        await engine.find("acme", Query(text="x"), top_k=101)
    with pytest.raises(InvalidInput, match="min_score"):
        await engine.find("acme", Query(text="x"), min_score=1.5)
    with pytest.raises(InvalidInput, match="text: required"):
        await engine.find("acme", Query(text="  "))
    with pytest.raises(InvalidInput, match="query"):
        Query(text="x", deal_id="d0")
    with pytest.raises(InvalidInput, match="query"):
        Query()
    assert len((await engine.find("acme", Query(text="x"), top_k=0)).matches) == 1  # 0 -> default 10


async def _closed_by_find(engine, workspace_id, deal_id, k):
    """Today's per-deal path: `find` by stored id among the closed deals."""
    try:
        found = await engine.find(workspace_id, Query(deal_id=deal_id), deal_filter=CLOSED, top_k=k)
    except NotFound:
        return None
    return [(m.score, m.deal.outcome is Outcome.WON) for m in found.matches]


def _same_answers(got, expected):
    assert len(got) == len(expected)
    for one, other in zip(got, expected, strict=True):
        if other is None:
            assert one is None
            continue
        assert [won for _, won in one] == [won for _, won in other]
        np.testing.assert_allclose([score for score, _ in one], [score for score, _ in other], atol=1e-6)


@pytest.mark.parametrize("k", [1, 5, 12])
async def test_closed_neighbours_answer_what_find_answers_per_deal(engine, k):
    await engine.upsert("acme", [deal(i) for i in range(60)])
    await engine.upsert("globex", [deal(i, notes=f"globex story {i}") for i in range(40)])
    pairs = [("acme", f"d{i}") for i in range(60)] + [("globex", f"d{i}") for i in range(0, 40, 3)]
    expected = [await _closed_by_find(engine, w, d, k) for w, d in pairs]
    got = engine.closed_neighbours(pairs, k)
    _same_answers(got, expected)
    assert all(answer is not None and len(answer) == k for answer in got)
    assert any(won for answer in got for _, won in answer) and any(not won for answer in got for _, won in answer)
    # The collection a caller resolved already gives the same answers.
    collection, _ = engine.serving()
    _same_answers(engine.closed_neighbours(pairs, k, collection), expected)


async def test_closed_neighbours_are_none_for_a_deal_not_stored_in_its_workspace(engine):
    await engine.upsert("acme", [deal(i) for i in range(30)])
    await engine.upsert("globex", [deal(500)])
    pairs = [("acme", "nope"), ("acme", "d500"), ("globex", "d1"), ("umbrella", "d1"), ("", "d1"), ("acme", "")]
    pairs += [("acme", "d2"), ("acme", "d2")]  # twice: the same answer twice
    got = engine.closed_neighbours(pairs, 5)
    assert got[:6] == [None] * 6
    _same_answers(got[6:], [await _closed_by_find(engine, "acme", "d2", 5)] * 2)
    assert engine.closed_neighbours([], 5) == []
    with pytest.raises(InvalidInput, match="k: must be in"):
        engine.closed_neighbours([("acme", "d2")], 0)
    with pytest.raises(InvalidInput, match="k: must be in"):
        engine.closed_neighbours([("acme", "d2")], 101)


async def test_closed_neighbours_never_come_from_another_workspace(engine, embedder):
    # globex holds a copy of every acme deal (the same text, so the same vector, a
    # score of 1.0) and closed deals only; acme's answers must not see any of them.
    acme = [deal(i) for i in range(30)]
    await engine.upsert("acme", acme)
    await engine.upsert("globex", [replace(r, outcome=Outcome.WON) for r in acme])
    got = engine.closed_neighbours([("acme", r.deal_id) for r in acme], 10)
    closed = [replace(r, workspace_id="acme") for r in acme if r.outcome is not Outcome.OPEN]
    for record, answer in zip(acme, got, strict=True):
        query_vector = embedder.vector(deal_to_text(record))
        _, scores = brute_force(embedder, closed, query_vector, exclude={record.deal_id}, limit=10)
        np.testing.assert_allclose([score for score, _ in answer], scores, atol=1e-5)
        assert all(score < 0.999 for score, _ in answer)
    # And globex's answers are globex's own deals: every one of them won.
    assert all(won for answer in engine.closed_neighbours([("globex", "d3")], 10) for _, won in answer)


def test_summary_weights_matches_by_similarity():
    def match(score, outcome):
        return Match(score, deal(0, outcome=outcome))

    summary = summarize([match(0.9, Outcome.WON), match(0.3, Outcome.LOST), match(0.5, Outcome.OPEN)])
    assert (summary.won_count, summary.lost_count, summary.open_count) == (1, 1, 1)
    assert summary.weighted_win_rate == pytest.approx(0.9 / 1.2)
    assert summary.mean_score == pytest.approx(1.7 / 3)
    assert summarize([match(0.8, Outcome.OPEN)]).weighted_win_rate == 0.0
    assert summarize([]).mean_score == 0.0
    # Only non-positive similarities among closed matches: the plain rate.
    assert summarize(
        [match(-0.2, Outcome.WON), match(-0.1, Outcome.LOST), match(-0.3, Outcome.LOST)]
    ).weighted_win_rate == (pytest.approx(1 / 3))


def test_record_round_trips_through_the_payload():
    at = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    record = DealRecord(
        deal_id="d1",
        workspace_id="acme",
        name="Ünïcode déal",
        value=12.5,
        probability=0.3,
        created_at=at,
        expected_close_at=at,
        stage_entered_at=at,
        stage_history=(StageChange("discovery", at), StageChange("proposal", at)),
        activity_counts={"emails": 3, "calls": 1},
        last_activity_at=at,
        competitor_present=False,
        outcome=Outcome.LOST,
        closed_at=at,
        owner_id="rep-1",
        contact_count=4,
        numeric_attributes={"seats": 250.0},
        categorical_attributes={"lead_source": "webinar"},
    )
    assert record_from_json(record_to_json(record)) == record


async def test_serves_the_newest_complete_collection_with_a_loaded_embedder(tmp_path):
    store = EdgeStore(tmp_path)
    v1, v2 = HashEmbedder(1, DIM), HashEmbedder(2, DIM)
    engine = SimilarityEngine(store, Embedders(v1))
    engine.open()
    await engine.upsert("acme", [deal(i) for i in range(5)])
    engine.close()

    # v2 is production, v1 still loaded: v1's collection serves until v2's is complete.
    engine = SimilarityEngine(store, Embedders(v1, v2))
    engine.open()
    assert (await engine.stats("acme")).embedder.version == 1
    assert (await engine.upsert("acme", [deal(9)])).embedder.version == 1
    assert v2.embedded == []
    engine.close()

    # Only v2 loaded and no v2 collection: unavailable, not a search with the wrong model.
    engine = SimilarityEngine(store, Embedders(v2))
    engine.open()
    with pytest.raises(Unavailable, match="reindex"):
        await engine.stats("acme")
    # An incomplete v2 collection is not served.
    building = store.create_collection("embedder", 2, DIM)
    building.close()
    engine.close()
    engine = SimilarityEngine(store, Embedders(v1, v2))
    engine.open()
    assert (await engine.stats("acme")).embedder.version == 1
    store.mark_complete("embedder-v2")
    engine.adopt("embedder-v2")
    assert (await engine.stats("acme")).embedder.version == 2
    engine.close()


async def test_dimension_mismatch_is_refused(tmp_path):
    store = EdgeStore(tmp_path)
    engine = SimilarityEngine(store, Embedders(HashEmbedder(1, DIM)))
    engine.open()
    engine.close()
    engine = SimilarityEngine(store, Embedders(HashEmbedder(1, DIM + 8)))
    engine.open()
    with pytest.raises(FailedPrecondition, match="dimensional"):
        await engine.upsert("acme", [deal(0)])
    engine.close()


async def test_rebuild_indexes_a_copy_while_writes_go_on(tmp_path):
    from server.stores.edge import optimize_elsewhere

    store = EdgeStore(tmp_path)
    embedder = HashEmbedder(1, DIM)
    engine = SimilarityEngine(store, Embedders(embedder))
    engine.open()
    await engine.upsert("acme", [deal(i) for i in range(200)])
    await engine.upsert("globex", [deal(i) for i in range(50)])
    globex_before = await engine.find("globex", Query(deal_id="d5"), top_k=20)
    assert engine.needs_rebuild(100) and not engine.needs_rebuild(1_000)

    rebuild = asyncio.create_task(engine.rebuild(optimize_elsewhere, retire_after=0))
    written = 0
    while not rebuild.done():  # add one deal and delete another, over and over
        await engine.upsert("acme", [deal(1000 + written)])
        assert await engine.delete("acme", [f"d{written}"]) == 1
        written += 1
        await asyncio.sleep(0.005)
    assert await rebuild == "embedder-v1-g1"
    assert written > 0  # the writes really overlapped the rebuild

    assert (await engine.stats("acme")).total == 200
    assert (await engine.stats("globex")).total == 50
    for i in range(written):
        await engine.find("acme", Query(deal_id=f"d{1000 + i}"), top_k=1)
        with pytest.raises(NotFound):
            await engine.find("acme", Query(deal_id=f"d{i}"))
    globex_after = await engine.find("globex", Query(deal_id="d5"), top_k=20)
    assert globex_after.matches == globex_before.matches
    await asyncio.sleep(0.05)  # the old generation is retired once requests are done with it
    assert [c.name for c in store.list_collections()] == ["embedder-v1-g1"]
    engine.close()

    engine = SimilarityEngine(EdgeStore(tmp_path), Embedders(embedder))
    engine.open()
    assert engine.serving()[0].name == "embedder-v1-g1"
    assert (await engine.stats("acme")).total == 200
    engine.close()


@pytest.mark.parametrize("later_complete", [False, True])
async def test_open_drops_what_an_interrupted_rebuild_left(tmp_path, later_complete):
    store = EdgeStore(tmp_path)
    engine = SimilarityEngine(store, Embedders(HashEmbedder(1, DIM)))
    engine.open()
    await engine.upsert("acme", [deal(i) for i in range(3)])
    engine.close()
    store.create_collection("embedder", 1, DIM, generation=1).close()
    if later_complete:
        store.mark_complete("embedder-v1-g1")
    engine = SimilarityEngine(store, Embedders(HashEmbedder(1, DIM)))
    engine.open()
    survivor = "embedder-v1-g1" if later_complete else "embedder-v1"
    assert [c.name for c in store.list_collections()] == [survivor]
    assert engine.serving()[0].name == survivor
    engine.close()


async def test_reindex_inside_the_server_while_writes_go_on(tmp_path):
    from server.stores.edge import optimize_elsewhere

    store = EdgeStore(tmp_path)
    v1, v2 = HashEmbedder(1, DIM), HashEmbedder(2, DIM)
    engine = SimilarityEngine(store, Embedders(v1, v2))
    store.create_collection("embedder", 1, DIM).close()
    store.mark_complete("embedder-v1")
    engine.open()
    await engine.upsert("acme", [deal(i) for i in range(150)])
    assert engine.serving()[1].version == 1

    rebuild = asyncio.create_task(engine.rebuild(optimize_elsewhere, embedder=v2, page_size=32, retire_after=0))
    written = 0
    while not rebuild.done():
        try:
            result = await engine.upsert("acme", [deal(1000 + written)])
        except Unavailable:  # embedded with v1 just before the switch: the client retries
            continue
        assert result.embedder.version in (1, 2)
        await engine.delete("acme", [f"d{written}"])
        written += 1
        await asyncio.sleep(0.005)
    assert await rebuild == "embedder-v2"
    assert written > 0

    assert engine.serving()[1].version == 2
    assert (await engine.stats("acme")).total == 150
    collection = engine.serving()[0]
    offset, seen = None, 0
    while True:
        page, offset = collection.scroll(offset, 100, with_vectors=True)
        for point in page:
            record = record_from_json(point.payload["record"])
            np.testing.assert_allclose(point.vector, v2.vector(deal_to_text(record)), atol=1e-6)
            assert not (record.deal_id.startswith("d") and int(record.deal_id[1:]) < written)
        seen += len(page)
        if offset is None:
            break
    assert seen == 150
    await asyncio.sleep(0.05)
    # The old version's collection stays on disk (complete) for a rollback.
    assert {c.name: c.complete for c in store.list_collections()} == {"embedder-v1": True, "embedder-v2": True}
    engine.close()
