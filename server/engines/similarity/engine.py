"""The requests of the Similarity engine: deals as vectors in a store, searched
per workspace.

- `upsert` renders each deal through the deal-to-text template, embeds the texts
  that changed (a SHA-256 of template version and text is kept in the payload,
  so a deal whose text is unchanged, for example one that was just won, keeps
  its vector) and writes every deal with its fields and outcome, idempotently by
  (workspace, deal id).
- `find` embeds a deal or a text, or takes the stored vector of a deal id, and
  returns the nearest deals of the workspace with a summary of their outcomes.
- `closed_neighbours` is the scorer's batch form of `find` by stored id: the k
  nearest closed deals of each deal's workspace, as (score, won) pairs.
- `delete` and `stats` do what they say, within one workspace.

Tenant isolation: the workspace is never part of a caller's filter. The engine
passes it to the store as its own argument on every call, the store adapters make
it a must-condition of the Qdrant filter, by-id reads go through the point id of
(workspace, deal id), and every payload read back is checked again here.

Which collection a request uses, and its life cycle, is `CollectionLifeCycle`'s
(`server.engines.similarity.lifecycle`). No grpc here; the servicer
(`server.services.similarity`) translates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.engines.similarity.embedders import EMBEDDER, Embedder, EmbedderRef, Embedders, check_vectors
from server.engines.similarity.lifecycle import CollectionLifeCycle
from server.engines.similarity.points import deal_payload, text_sha256, with_workspace
from server.stores.base import (
    NO_FILTER,
    OUTCOME,
    RECORD,
    TEXT_SHA256,
    Collection,
    DealFilter,
    DealPoint,
    VectorStore,
    payload_matches,
    point_id,
)
from vectoros.core.deal_codec.payload import record_from_json
from vectoros.core.deal_text import deal_to_text
from vectoros.core.deals import DealRecord, Outcome, check_id
from vectoros.core.errors import InvalidInput, NotFound, Unavailable

MAX_UPSERT = 256
MAX_DELETE = 1000
MAX_TOP_K = 100
DEFAULT_TOP_K = 10
MAX_QUERY_TEXT_BYTES = 32 * 1024
# What `closed_neighbours` searches among, and all it reads of each hit.
CLOSED = DealFilter(outcomes=(Outcome.WON.value, Outcome.LOST.value))
_OUTCOME_ONLY = (OUTCOME,)


@dataclass(frozen=True)
class UpsertResult:
    upserted: int
    unchanged: int
    embedder: EmbedderRef


@dataclass(frozen=True)
class Match:
    score: float
    deal: DealRecord


@dataclass(frozen=True)
class Summary:
    """Outcomes among the matches. `weighted_win_rate`: won / (won + lost), each
    match weighted by its similarity (clipped at 0; when every closed match has a
    similarity <= 0 the plain rate is used); 0 when no match is closed."""

    won_count: int
    lost_count: int
    open_count: int
    weighted_win_rate: float
    mean_score: float


@dataclass(frozen=True)
class FindResult:
    matches: list[Match]
    summary: Summary
    embedder: EmbedderRef


@dataclass(frozen=True)
class Stats:
    total: int
    by_outcome: dict[Outcome, int]
    embedder: EmbedderRef


@dataclass(frozen=True)
class Query:
    """What to compare against: exactly one of a deal (embedded, not stored), the
    id of a stored deal of the workspace, or a free text."""

    deal: DealRecord | None = None
    deal_id: str | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.deal, self.deal_id, self.text)) != 1:
            raise InvalidInput("query", "exactly one of deal, deal_id or text is required")


def summarize(matches: Sequence[Match]) -> Summary:
    """Won / lost / open counts and the similarity-weighted win rate (see `Summary`)."""
    won = [m.score for m in matches if m.deal.outcome is Outcome.WON]
    lost = [m.score for m in matches if m.deal.outcome is Outcome.LOST]
    won_weight = sum(max(score, 0.0) for score in won)
    closed_weight = won_weight + sum(max(score, 0.0) for score in lost)
    if closed_weight > 0:
        rate = won_weight / closed_weight
    elif won or lost:
        rate = len(won) / (len(won) + len(lost))
    else:
        rate = 0.0
    return Summary(
        won_count=len(won),
        lost_count=len(lost),
        open_count=len(matches) - len(won) - len(lost),
        weighted_win_rate=rate,
        mean_score=float(np.mean([m.score for m in matches])) if matches else 0.0,
    )


@dataclass
class _Serving:
    collection: Collection
    embedder: Embedder

    @property
    def ref(self) -> EmbedderRef:
        return EmbedderRef(self.embedder.name, self.embedder.version)



class SimilarityEngine(CollectionLifeCycle):
    """Deals of many workspaces in one store. Create it, `open()` it before serving
    (blocking: it opens the collections), `close()` it at shutdown.

    Calls of a remote store run in worker threads so they do not block the event
    loop. Calls of the embedded store run inline: each holds the GIL throughout
    (about a millisecond for a filtered search), so a thread would only add a hop
    (measured: ~1 ms per call on a busy 2-core machine).
    """

    def __init__(
        self, store: VectorStore, embedders: Embedders, *, embedder_name: str = EMBEDDER, hnsw_ef: int | None = None
    ) -> None:
        super().__init__(store, embedders, embedder_name=embedder_name)
        self.hnsw_ef = hnsw_ef  # search-time HNSW candidates; None: the store's default

    def _target(self) -> _Serving:
        collection, embedder = self.serving()
        return _Serving(collection, embedder)

    def _current(self, target: _Serving) -> Collection:
        """The collection to use after an await: a rebuild may have swapped in a new
        generation (same vectors), or a reindex a new embedder version (then the
        vectors of this request are of the wrong version: the caller retries)."""
        collection, embedder = self.serving()
        if embedder.version != target.embedder.version:
            raise Unavailable(
                f"the similarity store moved to embedder version {embedder.version} during the request; retry"
            )
        return collection

    # --- requests ---

    async def upsert(self, workspace_id: str, records: Sequence[DealRecord]) -> UpsertResult:
        """Store `records` (already checked; each deal's workspace_id empty or equal)
        in the served collection. Re-embeds only the deals whose text changed."""
        check_id(workspace_id, "workspace_id")
        if not 1 <= len(records) <= MAX_UPSERT:
            raise InvalidInput("deals", f"must hold 1 to {MAX_UPSERT} deals, got {len(records)}")
        seen: dict[str, int] = {}
        for index, record in enumerate(records):
            if record.workspace_id not in ("", workspace_id):
                raise InvalidInput(f"deals[{index}].workspace_id", "must be empty or equal to the request's")
            if record.deal_id in seen:
                raise InvalidInput(f"deals[{index}].id", f"duplicate of deals[{seen[record.deal_id]}].id")
            seen[record.deal_id] = index
        target = self._target()
        stored_records = [with_workspace(record, workspace_id) for record in records]
        texts = [deal_to_text(record) for record in stored_records]
        hashes = [text_sha256(text) for text in texts]
        ids = [point_id(workspace_id, record.deal_id) for record in stored_records]

        existing = await _call(target.collection, target.collection.retrieve, workspace_id, ids, with_vectors=True)
        kept = {
            p.point_id: p.vector
            for p in existing
            if payload_matches(p, workspace_id) and p.payload.get(TEXT_SHA256) == hashes[ids.index(p.point_id)]
        }
        changed = [i for i, pid in enumerate(ids) if pid not in kept]
        vectors: dict[str, np.ndarray] = dict(kept)
        if changed:
            embedded = await target.embedder.embed([texts[i] for i in changed])
            check_vectors(embedded, len(changed), target.collection)
            for row, i in enumerate(changed):
                vectors[ids[i]] = embedded[row]
        points = [
            DealPoint(pid, vectors[pid], deal_payload(workspace_id, record, text_hash))
            for pid, record, text_hash in zip(ids, stored_records, hashes, strict=True)
        ]
        collection = self._current(target)
        await _call(collection, self._write, collection, workspace_id, points)
        return UpsertResult(upserted=len(points), unchanged=len(kept), embedder=target.ref)

    def _write(self, collection: Collection, workspace_id: str, points: Sequence[DealPoint]) -> None:
        collection.upsert(points)
        self._notify(collection, workspace_id, [p.point_id for p in points])

    async def delete(self, workspace_id: str, deal_ids: Sequence[str]) -> int:
        """Remove deals of the workspace by id; unknown ids are ignored. Returns how
        many stored deals were removed."""
        check_id(workspace_id, "workspace_id")
        if not 1 <= len(deal_ids) <= MAX_DELETE:
            raise InvalidInput("deal_ids", f"must hold 1 to {MAX_DELETE} ids, got {len(deal_ids)}")
        for index, deal_id in enumerate(deal_ids):
            if not deal_id:
                raise InvalidInput(f"deal_ids[{index}]", "required")
        collection, _ = self.serving()
        ids = list(dict.fromkeys(point_id(workspace_id, deal_id) for deal_id in deal_ids))
        return await _call(collection, self._delete, collection, workspace_id, ids)

    def _delete(self, collection: Collection, workspace_id: str, ids: list[str]) -> int:
        found = [p.point_id for p in collection.retrieve(workspace_id, ids)]
        collection.delete(workspace_id, found)
        self._notify(collection, workspace_id, found)
        return len(found)

    async def find(
        self,
        workspace_id: str,
        query: Query,
        *,
        deal_filter: DealFilter = NO_FILTER,
        top_k: int = 0,
        min_score: float | None = None,
    ) -> FindResult:
        """The `top_k` (0 -> 10) stored deals of the workspace most similar to the
        query, best first, with a summary. The query deal itself is never a match."""
        check_id(workspace_id, "workspace_id")
        if not 0 <= top_k <= MAX_TOP_K:
            raise InvalidInput("top_k", f"must be in [0, {MAX_TOP_K}], got {top_k}")
        if min_score is not None and not -1.0 <= min_score <= 1.0:
            raise InvalidInput("min_score", f"must be in [-1, 1], got {min_score}")
        limit = top_k or DEFAULT_TOP_K
        target = self._target()
        collection = target.collection
        exclude: list[str] = []
        if query.deal_id is not None:
            if not query.deal_id:
                raise InvalidInput("deal_id", "required")
            pid = point_id(workspace_id, query.deal_id)
            stored = await _call(collection, collection.retrieve, workspace_id, [pid], with_vectors=True)
            if not stored or not payload_matches(stored[0], workspace_id) or stored[0].vector is None:
                # The same answer whether the id is unknown or another workspace's.
                raise NotFound(f"deal_id: no deal {query.deal_id!r} in workspace {workspace_id!r}")
            vector = stored[0].vector
            exclude.append(pid)
        elif query.deal is not None:
            if query.deal.workspace_id not in ("", workspace_id):
                raise InvalidInput("deal.workspace_id", "must be empty or equal to the request's")
            vector = await self._embed_one(target, deal_to_text(query.deal))
            exclude.append(point_id(workspace_id, query.deal.deal_id))
        else:
            assert query.text is not None
            if not query.text.strip():
                raise InvalidInput("text", "required")
            if len(query.text.encode("utf-8", "surrogatepass")) > MAX_QUERY_TEXT_BYTES:
                raise InvalidInput("text", f"at most {MAX_QUERY_TEXT_BYTES} bytes of UTF-8")
            vector = await self._embed_one(target, query.text)
        collection = self._current(target)
        hits = await _call(
            collection,
            collection.search,
            workspace_id,
            vector,
            limit=limit,
            deal_filter=deal_filter,
            min_score=min_score,
            exclude_point_ids=exclude,
            hnsw_ef=self.hnsw_ef,
        )
        matches = [
            Match(score=min(1.0, max(-1.0, hit.score)), deal=record_from_json(hit.point.payload[RECORD]))
            for hit in hits
            if payload_matches(hit.point, workspace_id) and hit.point.point_id not in exclude
        ]
        return FindResult(matches=matches, summary=summarize(matches), embedder=target.ref)

    async def _embed_one(self, target: _Serving, text: str) -> np.ndarray:
        vectors = await target.embedder.embed([text])
        check_vectors(vectors, 1, target.collection)
        return vectors[0]

    async def stats(self, workspace_id: str) -> Stats:
        """Stored deals of the workspace, in total and by outcome."""
        check_id(workspace_id, "workspace_id")
        target = self._target()

        def count() -> dict[Outcome, int]:
            return {outcome: target.collection.count(workspace_id, outcome.value) for outcome in Outcome}

        by_outcome = await _call(target.collection, count)
        return Stats(total=sum(by_outcome.values()), by_outcome=by_outcome, embedder=target.ref)


    def closed_neighbours(
        self, workspace_deal_ids: Sequence[tuple[str, str]], k: int, collection: Collection | None = None
    ) -> list[list[tuple[float, bool]] | None]:
        """For each (workspace id, deal id): the `k` stored deals of that workspace
        most similar to the deal's stored vector among the closed (won or lost)
        ones, the deal itself excluded, best first, as (cosine score, won) pairs;
        None where the deal is not stored in its workspace (an empty id included).

        What `find(workspace, Query(deal_id=...), deal_filter=CLOSED, top_k=k)`
        answers for each deal, in one call: the serving collection is resolved once
        (or given as `collection`, for a caller that already resolved it with
        `serving()`), the stored vectors are read with one call per workspace, and
        each search reads only the outcome of its hits, not their records. Never
        embeds. Blocking: run it in a worker thread for a store whose calls do not
        hold the GIL (`Collection.holds_gil`).
        """
        if not 1 <= k <= MAX_TOP_K:
            raise InvalidInput("k", f"must be in [1, {MAX_TOP_K}], got {k}")
        if collection is None:
            collection, _ = self.serving()
        ids = [point_id(workspace_id, deal_id) for workspace_id, deal_id in workspace_deal_ids]
        by_workspace: dict[str, list[str]] = {}
        for (workspace_id, deal_id), pid in zip(workspace_deal_ids, ids, strict=True):
            if workspace_id and deal_id:  # nothing is stored under an empty id
                by_workspace.setdefault(workspace_id, []).append(pid)
        vectors: dict[str, np.ndarray] = {}
        for workspace_id, pids in by_workspace.items():
            stored = collection.retrieve(workspace_id, list(dict.fromkeys(pids)), with_vectors=True, payload_keys=())
            for point in stored:
                if payload_matches(point, workspace_id) and point.vector is not None:
                    vectors[point.point_id] = point.vector
        answers: list[list[tuple[float, bool]] | None] = []
        for (workspace_id, _), pid in zip(workspace_deal_ids, ids, strict=True):
            vector = vectors.get(pid)
            if vector is None:
                answers.append(None)
                continue
            hits = collection.search(
                workspace_id,
                vector,
                limit=k,
                deal_filter=CLOSED,
                exclude_point_ids=[pid],
                hnsw_ef=self.hnsw_ef,
                payload_keys=_OUTCOME_ONLY,
            )
            answers.append(
                [
                    (min(1.0, max(-1.0, hit.score)), hit.point.payload.get(OUTCOME) == Outcome.WON.value)
                    for hit in hits
                    if payload_matches(hit.point, workspace_id) and hit.point.point_id != pid
                ]
            )
        return answers


async def _call(collection: Collection, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if collection.holds_gil:
        return function(*args, **kwargs)
    return await asyncio.to_thread(function, *args, **kwargs)
