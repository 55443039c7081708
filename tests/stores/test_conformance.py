"""One conformance suite for both stores: Qdrant Edge on disk, and qdrant-client's
in-memory mode standing in for a Qdrant server. Every expected result is computed
here with NumPy over the same random unit vectors."""

from __future__ import annotations

import numpy as np
import pytest

from server.stores.base import (
    DEAL_ID,
    INDUSTRY,
    OUTCOME,
    STAGE,
    VALUE,
    WORKSPACE,
    DealFilter,
    DealPoint,
    StoreError,
    collection_name,
    complete_collections,
    parse_collection_name,
    point_id,
)
from server.stores.edge import EdgeStore
from server.stores.remote import RemoteStore

DIM = 32
WORKSPACES = ("acme", "globex", "initech")
INDUSTRIES = ("software", "retail", "health")
STAGES = ("discovery", "proposal", "negotiation")
OUTCOMES = ("open", "won", "lost")


@pytest.fixture(params=["edge", "remote"])
def store(request, tmp_path):
    if request.param == "edge":
        made = EdgeStore(tmp_path / "vectors")
    else:
        made = RemoteStore.in_memory()
    yield made
    made.close()


class Data:
    """Random deals over three workspaces; deal ids repeat across workspaces."""

    def __init__(self, count: int = 450, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        vectors = rng.standard_normal((count, DIM)).astype(np.float32)
        self.vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        self.workspace = np.array([WORKSPACES[i % 3] for i in range(count)])
        self.deal = np.array([f"deal-{i // 3}" for i in range(count)])  # the same ids in every workspace
        self.industry = rng.choice(INDUSTRIES, count)
        self.stage = rng.choice(STAGES, count)
        self.outcome = rng.choice(OUTCOMES, count)
        self.value = np.round(rng.uniform(0, 100_000, count), 2)
        self.ids = np.array([point_id(w, d) for w, d in zip(self.workspace, self.deal, strict=True)])

    def point(self, i: int, **payload) -> DealPoint:
        return DealPoint(
            self.ids[i],
            self.vectors[i],
            {
                WORKSPACE: str(self.workspace[i]),
                DEAL_ID: str(self.deal[i]),
                INDUSTRY: str(self.industry[i]),
                STAGE: str(self.stage[i]),
                OUTCOME: str(self.outcome[i]),
                VALUE: float(self.value[i]),
                **payload,
            },
        )

    def points(self) -> list[DealPoint]:
        return [self.point(i) for i in range(len(self.ids))]

    def expected(self, workspace: str, query: np.ndarray, limit: int, mask=None) -> list[str]:
        keep = self.workspace == workspace
        if mask is not None:
            keep &= mask
        scores = np.where(keep, self.vectors @ query, -np.inf)
        order = np.argsort(-scores, kind="stable")[:limit]
        return [self.ids[i] for i in order if np.isfinite(scores[i])]


def _fill(made):
    data = Data()
    collection = made.create_collection("embedder", 1, DIM)
    points = data.points()
    for start in range(0, len(points), 100):
        collection.upsert(points[start : start + 100])
    return data, collection


@pytest.fixture
def loaded(store):
    data, collection = _fill(store)
    yield data, collection
    collection.close()


@pytest.fixture(scope="module", params=["edge", "remote"])
def shared(request, tmp_path_factory):
    """One filled collection per store for the tests that only read."""
    made = EdgeStore(tmp_path_factory.mktemp("vectors")) if request.param == "edge" else RemoteStore.in_memory()
    data, collection = _fill(made)
    yield data, collection
    collection.close()
    made.close()


def test_point_ids_are_stable_and_never_collide_across_workspaces():
    assert point_id("acme", "d1") == point_id("acme", "d1")
    assert point_id("acme", "d1") != point_id("globex", "d1")
    # A separator inside an id cannot forge another (workspace, id) pair.
    assert point_id("a/b", "c") != point_id("a", "b/c")
    assert point_id('a", "b', "c") != point_id("a", 'b", "c')


def test_collection_names():
    assert collection_name("embedder", 3) == "embedder-v3"
    assert collection_name("embedder", 3, 2) == "embedder-v3-g2"
    assert parse_collection_name("embedder-v3-g2") == ("embedder", 3, 2)
    assert parse_collection_name("embedder-v0") is None
    assert parse_collection_name("../etc") is None


def test_collections_life_cycle(store):
    assert store.list_collections() == []
    first = store.create_collection("embedder", 1, DIM, meta={"template": 2})
    first.close()
    with pytest.raises(StoreError):
        store.create_collection("embedder", 1, DIM)
    second = store.create_collection("embedder", 2, DIM)
    second.close()
    infos = {c.name: c for c in store.list_collections()}
    assert set(infos) == {"embedder-v1", "embedder-v2"}
    assert infos["embedder-v1"].meta == {"template": 2}
    assert not any(c.complete for c in infos.values())
    assert complete_collections(store, "embedder") == []

    store.mark_complete("embedder-v1")
    assert [c.name for c in complete_collections(store, "embedder")] == ["embedder-v1"]
    store.mark_complete("embedder-v2")
    assert [c.name for c in complete_collections(store, "embedder")] == ["embedder-v2", "embedder-v1"]

    reopened = store.open_collection("embedder-v2")
    assert (reopened.dimension, reopened.info.complete) == (DIM, True)
    reopened.close()
    store.drop_collection("embedder-v2")
    assert [c.name for c in store.list_collections()] == ["embedder-v1"]
    with pytest.raises(StoreError):
        store.open_collection("embedder-v2")


def test_round_trip_and_idempotent_upsert(loaded):
    data, collection = loaded
    assert collection.points_count() == len(data.ids)
    got = collection.retrieve("acme", [data.ids[0], data.ids[3]], with_vectors=True)
    assert {p.point_id for p in got} == {data.ids[0], data.ids[3]}
    first = next(p for p in got if p.point_id == data.ids[0])
    np.testing.assert_allclose(first.vector, data.vectors[0], atol=1e-6)
    assert first.payload == data.point(0).payload
    assert (first.workspace_id, first.deal_id) == ("acme", "deal-0")

    # The same (workspace, deal) again replaces it: count unchanged, new payload.
    collection.upsert([data.point(0, **{STAGE: "closed"})])
    assert collection.points_count() == len(data.ids)
    (again,) = collection.retrieve("acme", [data.ids[0]])
    assert again.payload[STAGE] == "closed" and again.vector is None


def test_search_matches_brute_force(shared):
    data, collection = shared
    rng = np.random.default_rng(1)
    for workspace in WORKSPACES:
        query = rng.standard_normal(DIM).astype(np.float32)
        query /= np.linalg.norm(query)
        hits = collection.search(workspace, query, limit=10)
        assert [h.point.point_id for h in hits] == data.expected(workspace, query, 10)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        reference = [float(data.vectors[list(data.ids).index(h.point.point_id)] @ query) for h in hits]
        np.testing.assert_allclose(scores, reference, atol=1e-5)
        assert all(h.point.workspace_id == workspace and h.point.vector is None for h in hits)


def test_search_takes_a_search_time_hnsw_ef(shared):
    # Both adapters pass it to Qdrant; this collection is small enough to be
    # searched exactly, so the answer is the exact one whatever ef says.
    data, collection = shared
    query = data.vectors[5]
    hits = collection.search("acme", query, limit=10, hnsw_ef=16)
    assert [h.point.point_id for h in hits] == data.expected("acme", query, 10)


def test_a_stored_vector_finds_itself_unless_excluded(shared):
    data, collection = shared
    hits = collection.search("globex", data.vectors[1], limit=3)
    assert hits[0].point.point_id == data.ids[1] and hits[0].score == pytest.approx(1.0, abs=1e-5)
    hits = collection.search("globex", data.vectors[1], limit=3, exclude_point_ids=[data.ids[1]])
    assert data.ids[1] not in [h.point.point_id for h in hits]
    assert [h.point.point_id for h in hits] == data.expected("globex", data.vectors[1], 4)[1:]


@pytest.mark.parametrize(
    "deal_filter",
    [
        DealFilter(industries=("software",)),
        DealFilter(stages=("proposal", "negotiation")),
        DealFilter(outcomes=("won", "lost")),
        DealFilter(min_value=25_000.0),
        DealFilter(max_value=40_000.0),
        DealFilter(min_value=10_000.0, max_value=60_000.0, outcomes=("won",), industries=("retail", "health")),
        DealFilter(industries=("no such industry",)),
    ],
)
def test_filters_match_brute_force(shared, deal_filter):
    data, collection = shared
    mask = np.ones(len(data.ids), bool)
    if deal_filter.industries:
        mask &= np.isin(data.industry, deal_filter.industries)
    if deal_filter.stages:
        mask &= np.isin(data.stage, deal_filter.stages)
    if deal_filter.outcomes:
        mask &= np.isin(data.outcome, deal_filter.outcomes)
    if deal_filter.min_value is not None:
        mask &= data.value >= deal_filter.min_value
    if deal_filter.max_value is not None:
        mask &= data.value <= deal_filter.max_value
    query = data.vectors[5]
    hits = collection.search("initech", query, limit=20, deal_filter=deal_filter)
    assert [h.point.point_id for h in hits] == data.expected("initech", query, 20, mask)


def test_a_payload_selection_reads_only_those_keys(shared):
    # The same hits as with the whole payload; each carries the workspace and the
    # deal id (the isolation checks read them) and the keys asked for, nothing else.
    data, collection = shared
    closed = DealFilter(outcomes=("won", "lost"))
    query = data.vectors[5]
    whole = collection.search("acme", query, limit=10, deal_filter=closed, exclude_point_ids=[data.ids[0]])
    some = collection.search(
        "acme", query, limit=10, deal_filter=closed, exclude_point_ids=[data.ids[0]], payload_keys=(OUTCOME,)
    )
    assert [h.point.point_id for h in some] == [h.point.point_id for h in whole]
    assert [h.point.point_id for h in some] == data.expected("acme", query, 10, np.isin(data.outcome, ("won", "lost")))
    np.testing.assert_allclose([h.score for h in some], [h.score for h in whole], atol=1e-6)
    for hit in some:
        i = list(data.ids).index(hit.point.point_id)
        assert hit.point.payload == {WORKSPACE: "acme", DEAL_ID: str(data.deal[i]), OUTCOME: str(data.outcome[i])}

    got = collection.retrieve("acme", [data.ids[0], data.ids[3], data.ids[1]], with_vectors=True, payload_keys=())
    assert {p.point_id for p in got} == {data.ids[0], data.ids[3]}  # data.ids[1] is globex's
    for point in got:
        i = list(data.ids).index(point.point_id)
        assert point.payload == {WORKSPACE: "acme", DEAL_ID: str(data.deal[i])}
        np.testing.assert_allclose(point.vector, data.vectors[i], atol=1e-6)
    (whole_point,) = collection.retrieve("acme", [data.ids[0]], payload_keys=None)
    assert whole_point.payload == data.point(0).payload


def test_value_bounds_are_inclusive(shared):
    data, collection = shared
    value = float(data.value[4])
    hits = collection.search(
        "globex", data.vectors[4], limit=5, deal_filter=DealFilter(min_value=value, max_value=value)
    )
    assert [h.point.point_id for h in hits] == [data.ids[4]]


def test_min_score(shared):
    data, collection = shared
    query = data.vectors[2]
    everything = collection.search("initech", query, limit=200)
    threshold = everything[7].score - 1e-4
    hits = collection.search("initech", query, limit=200, min_score=threshold)
    assert [h.point.point_id for h in hits] == [h.point.point_id for h in everything[:8]]
    assert all(h.score >= threshold for h in hits)


def test_isolation_on_every_call(loaded):
    data, collection = loaded
    acme = [i for i in range(len(data.ids)) if data.workspace[i] == "acme"]
    globex_ids = [data.ids[i] for i in range(len(data.ids)) if data.workspace[i] == "globex"]
    # By id: another workspace's points are invisible.
    assert collection.retrieve("acme", globex_ids) == []
    # Search with a globex vector and no filter still returns only acme points.
    hits = collection.search("acme", data.vectors[1], limit=500)
    assert {h.point.workspace_id for h in hits} == {"acme"} and len(hits) == len(acme)
    # Delete through acme with globex's ids removes nothing.
    before = collection.count("globex")
    collection.delete("acme", globex_ids)
    assert collection.count("globex") == before == len(globex_ids)
    assert collection.count("acme") == len(acme)
    # An unknown workspace sees nothing at all.
    assert collection.search("umbrella", data.vectors[0], limit=10) == []
    assert collection.count("umbrella") == 0


def test_delete_and_counts(loaded):
    data, collection = loaded
    mine = [i for i in range(len(data.ids)) if data.workspace[i] == "initech"]
    for outcome in OUTCOMES:
        expected = sum(1 for i in mine if data.outcome[i] == outcome)
        assert collection.count("initech", outcome) == expected
    gone = [data.ids[i] for i in mine[:10]]
    collection.delete("initech", [*gone, point_id("initech", "never stored")])
    assert collection.count("initech") == len(mine) - 10
    assert collection.retrieve("initech", gone) == []
    # The same deal ids of the other workspaces are untouched.
    assert len(collection.retrieve("acme", [point_id("acme", data.deal[i]) for i in mine[:10]])) == 10


def test_scroll_visits_every_point_once(shared):
    data, collection = shared
    seen: list[str] = []
    offset = None
    while True:
        page, offset = collection.scroll(offset, limit=64)
        assert all(p.vector is not None and p.vector.shape == (DIM,) for p in page)
        seen.extend(p.point_id for p in page)
        if offset is None:
            break
    assert sorted(seen) == sorted(data.ids)


def test_vectors_of_the_wrong_shape_are_refused(store):
    collection = store.create_collection("embedder", 1, DIM)
    point = DealPoint(point_id("w", "d"), np.ones(DIM + 1, np.float32), {WORKSPACE: "w", DEAL_ID: "d"})
    with pytest.raises(StoreError):
        collection.upsert([point])
    with pytest.raises(StoreError):
        collection.search("w", np.full(DIM, np.nan, np.float32), limit=1)
    collection.close()
