"""The Similarity engine: deals as vectors in a store, searched per workspace.

- `upsert` renders each deal through the deal-to-text template, embeds the texts
  that changed (a SHA-256 of template version and text is kept in the payload,
  so a deal whose text is unchanged, for example one that was just won, keeps
  its vector) and writes every deal with its fields and outcome, idempotently by
  (workspace, deal id).
- `find` embeds a deal or a text, or takes the stored vector of a deal id, and
  returns the nearest deals of the workspace with a summary of their outcomes.
- `delete` and `stats` do what they say, within one workspace.

Tenant isolation: the workspace is never part of a caller's filter. The engine
passes it to the store as its own argument on every call, the store adapters make
it a must-condition of the Qdrant filter, by-id reads go through the point id of
(workspace, deal id), and every payload read back is checked again here.

Collections: one per embedder version (`server.stores.base`). The engine serves
the newest *complete* collection whose embedder version is loaded, so while a new
embedder's collection is being built (`vectoros reindex`, or `rebuild` here),
searches and writes keep using the old one with the old embedder.

No grpc here; the servicer (`server.services.similarity`) translates.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from server.stores.base import (
    DEAL_ID,
    INDUSTRY,
    NO_FILTER,
    OUTCOME,
    RECORD,
    STAGE,
    TEXT_SHA256,
    VALUE,
    WORKSPACE,
    Collection,
    CollectionInfo,
    DealFilter,
    DealPoint,
    VectorStore,
    payload_matches,
    point_id,
)
from vectoros.core.deal_codec.payload import record_from_json, record_to_json
from vectoros.core.deal_text import TEMPLATE_VERSION, deal_to_text
from vectoros.core.deals import DealRecord, Outcome
from vectoros.core.errors import FailedPrecondition, InvalidInput, NotFound, Unavailable

log = logging.getLogger("vectoros.similarity")

EMBEDDER = "embedder"
MAX_UPSERT = 256
MAX_DELETE = 1000
MAX_TOP_K = 100
DEFAULT_TOP_K = 10
MAX_QUERY_TEXT_BYTES = 32 * 1024


# --- embedders ----------------------------------------------------------------------


class Embedder(Protocol):
    """What the engine needs of an embedder version: texts in, unit vectors out
    (float32 [len(texts), dimension])."""

    name: str
    version: int
    dimension: int

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class Embedders(Protocol):
    """The embedder versions loaded now. `current()` is the one new collections
    are made with (production; raises `Unavailable` when none is loaded);
    `version(v)` is a loaded version or None."""

    def current(self) -> Embedder: ...

    def version(self, version: int) -> Embedder | None: ...


@dataclass(frozen=True)
class EmbedderRef:
    name: str
    version: int


# --- results --------------------------------------------------------------------------


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


# --- the deal record in a payload -------------------------------------------------------


def text_sha256(text: str) -> str:
    """Fingerprint of an embedded text: a new template version re-embeds even if
    the words happen to be the same."""
    return hashlib.sha256(f"{TEMPLATE_VERSION}\0{text}".encode()).hexdigest()


def deal_payload(workspace_id: str, record: DealRecord, text_hash: str) -> dict[str, Any]:
    return {
        WORKSPACE: workspace_id,
        DEAL_ID: record.deal_id,
        INDUSTRY: record.industry,
        STAGE: record.stage,
        OUTCOME: record.outcome.value,
        VALUE: float(record.value),
        TEXT_SHA256: text_hash,
        RECORD: record_to_json(record),
    }


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


# --- the engine -----------------------------------------------------------------------


@dataclass
class _Serving:
    collection: Collection
    embedder: Embedder

    @property
    def ref(self) -> EmbedderRef:
        return EmbedderRef(self.embedder.name, self.embedder.version)


# Called with (collection name, workspace, point ids) after every write, from the
# writing thread.
WriteListener = Callable[[str, str, Sequence[str]], None]


@dataclass
class _State:
    open: dict[str, Collection] = field(default_factory=dict)  # complete collections, by name
    infos: dict[str, CollectionInfo] = field(default_factory=dict)


class SimilarityEngine:
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
        self.store = store
        self.embedders = embedders
        self.embedder_name = embedder_name
        self.hnsw_ef = hnsw_ef  # search-time HNSW candidates; None: the store's default
        self._state = _State()
        self._lock = threading.Lock()
        self._listeners: list[WriteListener] = []
        self._rebuilding = False
        self._retired: set[str] = set()  # replaced by a rebuild: never reopened by `open()`
        self._retiring: dict[str, Collection] = {}  # replaced, closed a little later

    # --- life cycle ---

    def open(self) -> None:
        """Open every complete collection of the embedder. With none at all, create
        the current embedder's (empty, hence complete). Blocking."""
        with self._lock:
            infos = [c for c in self.store.list_collections() if c.embedder_name == self.embedder_name]
            if not self._state.open and not self._rebuilding:
                infos = self._drop_leftovers(infos)
            if not any(c.complete for c in infos):
                self._create_first(infos)
                infos = [c for c in self.store.list_collections() if c.embedder_name == self.embedder_name]
            opened, known = dict(self._state.open), dict(self._state.infos)
            for info in infos:
                if info.complete and info.name not in opened and info.name not in self._retired:
                    opened[info.name] = self.store.open_collection(info.name)
                    known[info.name] = info
            if opened.keys() != self._state.open.keys():
                log.info("similarity store open", extra={"collections": ", ".join(sorted(opened))})
            # Replaced whole, never mutated: requests read `_state` without the lock.
            self._state = _State(opened, known)

    def _drop_leftovers(self, infos: list[CollectionInfo]) -> list[CollectionInfo]:
        """Remove what an interrupted rebuild left: an incomplete later generation, or
        a generation superseded by a complete later one of the same version."""
        newest: dict[int, int] = {}
        for info in infos:
            if info.complete:
                newest[info.embedder_version] = max(newest.get(info.embedder_version, 0), info.generation)
        kept = []
        for info in infos:
            leftover = (info.generation > 0 and not info.complete) or (
                info.complete and info.generation < newest[info.embedder_version]
            )
            if leftover:
                log.info("dropping leftover collection", extra={"collection": info.name})
                self.store.drop_collection(info.name)
            else:
                kept.append(info)
        return kept

    def _create_first(self, infos: list[CollectionInfo]) -> None:
        embedder = self.embedders.current()  # Unavailable until an embedder is loaded
        existing = next((c for c in infos if (c.embedder_version, c.generation) == (embedder.version, 0)), None)
        if existing is not None:
            # A first create that died before it was marked complete: keep it if empty.
            collection = self.store.open_collection(existing.name)
            try:
                empty = collection.points_count() == 0
            finally:
                collection.close()
            if not empty:
                raise FailedPrecondition(
                    f"collection {existing.name} is incomplete and no complete collection exists; "
                    "run `vectoros reindex` to finish it"
                )
        else:
            self.store.create_collection(
                self.embedder_name, embedder.version, embedder.dimension, meta={"template": TEMPLATE_VERSION}
            ).close()
            existing = self.store.list_collections()
            existing = next(c for c in existing if c.embedder_version == embedder.version and c.generation == 0)
        self.store.mark_complete(existing.name)

    def adopt(self, name: str) -> None:
        """Start serving a collection that was completed while the engine ran (the
        last step of a rebuild). Blocking."""
        with self._lock:
            info = next((c for c in self.store.list_collections() if c.name == name), None)
            if info is None or not info.complete:
                raise FailedPrecondition(f"collection {name} is not complete")
            if name not in self._state.open:
                collection = self.store.open_collection(name)
                self._state = _State({**self._state.open, name: collection}, {**self._state.infos, name: info})

    def close(self) -> None:
        with self._lock:
            for collection in [*self._state.open.values(), *self._retiring.values()]:
                collection.close()
            self._state = _State()
            self._retiring.clear()

    def add_write_listener(self, listener: WriteListener) -> None:
        self._listeners.append(listener)

    def remove_write_listener(self, listener: WriteListener) -> None:
        self._listeners.remove(listener)

    def collections(self) -> list[CollectionInfo]:
        """The open (complete) collections, newest first."""
        return sorted(self._state.infos.values(), key=lambda c: c.order, reverse=True)

    def serving(self) -> tuple[Collection, Embedder]:
        """The collection requests use now and its embedder: the newest complete
        collection whose embedder version is loaded."""
        state = self._state
        for info in sorted(state.infos.values(), key=lambda c: c.order, reverse=True):
            embedder = self.embedders.version(info.embedder_version)
            if embedder is not None:
                if embedder.dimension != info.dimension:
                    raise FailedPrecondition(
                        f"embedder version {embedder.version} makes {embedder.dimension}-dimensional vectors, "
                        f"collection {info.name} holds {info.dimension}"
                    )
                return state.open[info.name], embedder
        if not state.infos:
            raise Unavailable("the similarity store is not open")
        have = ", ".join(f"v{c.embedder_version}" for c in state.infos.values())
        raise Unavailable(
            f"no loaded embedder version matches a complete collection (collections: {have}); "
            "run `vectoros reindex` for the production embedder"
        )

    def _target(self) -> _Serving:
        collection, embedder = self.serving()
        return _Serving(collection, embedder)

    def _notify(self, collection: Collection, workspace_id: str, point_ids: Sequence[str]) -> None:
        for listener in list(self._listeners):
            listener(collection.name, workspace_id, point_ids)

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
        _check_workspace(workspace_id)
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
        stored_records = [_with_workspace(record, workspace_id) for record in records]
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
            _check_vectors(embedded, len(changed), target.collection)
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
        _check_workspace(workspace_id)
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
        _check_workspace(workspace_id)
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
        _check_vectors(vectors, 1, target.collection)
        return vectors[0]

    async def stats(self, workspace_id: str) -> Stats:
        """Stored deals of the workspace, in total and by outcome."""
        _check_workspace(workspace_id)
        target = self._target()

        def count() -> dict[Outcome, int]:
            return {outcome: target.collection.count(workspace_id, outcome.value) for outcome in Outcome}

        by_outcome = await _call(target.collection, count)
        return Stats(total=sum(by_outcome.values()), by_outcome=by_outcome, embedder=target.ref)

    # --- indexing the embedded store without stopping it ---

    def needs_rebuild(self, threshold: int) -> bool:
        """Whether the served collection has `threshold` or more points that no
        vector index covers, and is one this engine must index itself."""
        try:
            collection, _ = self.serving()
        except (Unavailable, FailedPrecondition):
            return False
        return collection.holds_gil and not self._rebuilding and collection.unindexed_count() >= threshold

    def needs_reindex(self) -> bool:
        """Whether the production embedder is newer than every open collection (its
        own collection is missing or incomplete)."""
        try:
            current = self.embedders.current()
        except Unavailable:
            return False
        collections = self.collections()
        return bool(collections) and collections[0].embedder_version < current.version and not self._rebuilding

    async def rebuild(
        self,
        optimize: Callable[[Collection], Awaitable[None]],
        *,
        embedder: Embedder | None = None,
        page_size: int = 128,
        retire_after: float = 5.0,
        max_rounds: int = 50,
    ) -> str | None:
        """Build the served collection again while it serves, then switch to it.

        Without `embedder`: copy it (vectors and payloads) into its next generation
        (``embedder-v3-g1``) to index it. With `embedder` (a newer version): re-embed
        every deal into that version's collection, the in-server form of
        `vectoros reindex` (resumes an interrupted build by text hash).

        The new collection is indexed by `optimize`, which must not hold this
        process's GIL (`server.stores.edge.optimize_elsewhere` runs it in a child
        process). Writes go on meanwhile: each write to the old collection is noted
        and redone in the new one; once a catch-up round ends with nothing new
        noted, the completion mark and the switch follow without yielding to the
        event loop, so no acknowledged write is left behind. A request that made
        its vectors with the old version before the switch fails with
        `Unavailable` (retry) instead of writing them to the new collection. The old
        collection is closed `retire_after` seconds later (requests holding it
        finish first) and dropped if it was an older generation of the same version.

        Returns the new collection's name, or None when there is nothing to do (a
        store that indexes on its own, or a rebuild already running). Only for
        stores whose calls run inline (`holds_gil`).
        """
        if self._rebuilding:
            return None
        if embedder is None:
            source, _ = self.serving()
        else:
            # The newest older collection, served or not: its records are re-rendered
            # and embedded again, so its own embedder need not be loaded.
            older = [c for c in self.collections() if c.embedder_version < embedder.version]
            if not older:
                return None
            source = self._state.open[older[0].name]
        if not source.holds_gil:
            return None
        self._rebuilding = True
        info = source.info
        dirty: dict[str, set[str]] = {}

        def note(name: str, workspace_id: str, point_ids: Sequence[str]) -> None:
            if name == info.name:
                dirty.setdefault(workspace_id, set()).update(point_ids)

        async def catch_up(batch: dict[str, set[str]]) -> None:
            if embedder is None:
                _copy_points(source, target, batch)
                return
            for workspace_id, ids in batch.items():
                present = source.retrieve(workspace_id, list(ids))
                if present:
                    await _reembed_async(present, target, embedder)
                target.delete(workspace_id, list(ids - {p.point_id for p in present}))

        target: Collection | None = None
        self.add_write_listener(note)
        try:
            target = self._open_target(info, embedder)
            offset: str | None = None
            while True:  # in slices, so requests run between them
                page, offset = source.scroll(offset, page_size, with_vectors=embedder is None)
                if embedder is None:
                    target.upsert(page)
                    await asyncio.sleep(0)
                elif page:
                    await _reembed_async(page, target, embedder)
                if offset is None:
                    break
            target.flush()
            target.close()
            await optimize(target)
            target = self.store.open_collection(target.name)
            rounds = 0
            while dirty:
                rounds += 1
                if rounds > max_rounds:
                    raise Unavailable(f"writes kept coming during {max_rounds} catch-up rounds; rebuild later")
                batch = dict(dirty)
                dirty.clear()
                await catch_up(batch)
            # Nothing left to redo and, from here to the switch, no await.
            self.store.mark_complete(target.name)
            with self._lock:
                opened = {k: v for k, v in self._state.open.items() if k != info.name}
                known = {k: v for k, v in self._state.infos.items() if k != info.name}
                opened[target.name] = target
                known[target.name] = replace(target.info, complete=True)
                self._state = _State(opened, known)
                self._retired.add(info.name)
        except BaseException:
            if target is not None:
                target.close()
                if embedder is None:  # a re-embedding resumes from what it wrote
                    self.store.drop_collection(target.name)
            raise
        finally:
            self.remove_write_listener(note)
            self._rebuilding = False
        log.info("similarity collection rebuilt", extra={"collection": target.name, "replaces": info.name})
        same_version = embedder is None

        self._retiring[info.name] = source

        def retire() -> None:
            with self._lock:
                if self._retiring.pop(info.name, None) is None:
                    return  # the engine was closed first
            source.close()
            if same_version:
                self.store.drop_collection(info.name)

        asyncio.get_running_loop().call_later(retire_after, retire)
        return target.name

    def _open_target(self, info: CollectionInfo, embedder: Embedder | None) -> Collection:
        if embedder is None:
            return self.store.create_collection(
                info.embedder_name, info.embedder_version, info.dimension, info.meta, generation=info.generation + 1
            )
        existing = next(
            (
                c
                for c in self.store.list_collections()
                if c.embedder_name == info.embedder_name and (c.embedder_version, c.generation) == (embedder.version, 0)
            ),
            None,
        )
        if existing is None:
            return self.store.create_collection(
                info.embedder_name, embedder.version, embedder.dimension, meta={"template": TEMPLATE_VERSION}
            )
        if existing.dimension != embedder.dimension:
            raise FailedPrecondition(
                f"collection {existing.name} holds {existing.dimension}-dimensional vectors, "
                f"embedder version {embedder.version} makes {embedder.dimension}"
            )
        return self.store.open_collection(existing.name)


def _copy_points(source: Collection, target: Collection, dirty: dict[str, set[str]]) -> None:
    """Make `target` hold what `source` holds for these points (copy or delete)."""
    for workspace_id, ids in dirty.items():
        present = source.retrieve(workspace_id, list(ids), with_vectors=True)
        target.upsert(present)
        target.delete(workspace_id, list(ids - {p.point_id for p in present}))


async def _call(collection: Collection, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if collection.holds_gil:
        return function(*args, **kwargs)
    return await asyncio.to_thread(function, *args, **kwargs)


def _check_workspace(workspace_id: str) -> None:
    if not workspace_id:
        raise InvalidInput("workspace_id", "required")
    if len(workspace_id.encode("utf-8", "surrogatepass")) > 128:
        raise InvalidInput("workspace_id", "at most 128 bytes")


def _with_workspace(record: DealRecord, workspace_id: str) -> DealRecord:
    return record if record.workspace_id == workspace_id else replace(record, workspace_id=workspace_id)


def _check_vectors(vectors: np.ndarray, rows: int, collection: Collection) -> None:
    if vectors.shape != (rows, collection.dimension):
        raise FailedPrecondition(
            f"the embedder returned vectors of shape {vectors.shape}; collection {collection.name} "
            f"holds {collection.dimension}-dimensional vectors"
        )
    if not np.all(np.isfinite(vectors)):
        raise FailedPrecondition("the embedder returned non-finite vectors")


# --- reindexing -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReindexResult:
    """`source`: the collection copied (None when the store had none); `target`:
    the collection made complete; `embedded`: deals whose text was embedded (the
    rest were already in the target with the same text, from an interrupted run);
    `total`: deals in the target."""

    source: str | None
    target: str
    embedded: int
    total: int
    optimized: bool
    seconds: float


def reindex(
    store: VectorStore,
    embedder_version: int,
    dimension: int,
    embed: Callable[[Sequence[str]], np.ndarray],
    *,
    embedder_name: str = EMBEDDER,
    batch_size: int = 128,
    optimize: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> ReindexResult:
    """Re-embed every stored deal into the collection of `embedder_version`, then
    mark it complete (last, so searches keep using the old collection until then).

    The source is the newest complete collection of another version. Deals are
    re-rendered from their stored records with the current template and embedded
    with `embed` (texts -> float32 [n, dimension]); a run that was interrupted
    resumes cheaply, since deals already in the target with the same text hash are
    not embedded again. Blocking, and meant to run while nothing writes to the
    source (the embedded store enforces it: a collection opens in one process).
    `optimize` builds the target's HNSW index before it is marked complete.
    `progress(done, total)` is called after each batch.
    """
    started = time.perf_counter()
    infos = [c for c in store.list_collections() if c.embedder_name == embedder_name]
    target_info = next((c for c in infos if (c.embedder_version, c.generation) == (embedder_version, 0)), None)
    if target_info is not None and target_info.dimension != dimension:
        raise FailedPrecondition(
            f"collection {target_info.name} holds {target_info.dimension}-dimensional vectors, "
            f"the embedder makes {dimension}"
        )
    sources = sorted(
        (c for c in infos if c.complete and c.embedder_version != embedder_version), key=lambda c: c.order, reverse=True
    )
    if target_info is not None and target_info.complete:
        return ReindexResult(None, target_info.name, 0, _count_points(store, target_info.name), False, 0.0)
    if target_info is None:
        target = store.create_collection(
            embedder_name, embedder_version, dimension, meta={"template": TEMPLATE_VERSION}
        )
    else:
        target = store.open_collection(target_info.name)
    source_name = sources[0].name if sources else None
    embedded = 0
    try:
        if source_name is not None:
            source = store.open_collection(source_name)
            try:
                embedded = _copy_reembedded(source, target, embed, batch_size, progress)
            finally:
                source.close()
        optimized = bool(optimize and target.optimize())
        total = target.points_count()
        target.flush()
    finally:
        target.close()
    store.mark_complete(target.name)
    return ReindexResult(source_name, target.name, embedded, total, optimized, time.perf_counter() - started)


def _count_points(store: VectorStore, name: str) -> int:
    collection = store.open_collection(name)
    try:
        return collection.points_count()
    finally:
        collection.close()


def _copy_reembedded(
    source: Collection,
    target: Collection,
    embed: Callable[[Sequence[str]], np.ndarray],
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> int:
    total = source.points_count()
    done = embedded = 0
    offset: str | None = None
    while True:
        page, offset = source.scroll(offset, batch_size, with_vectors=False)
        if page:
            embedded += _reembed_page(page, target, embed)
            done += len(page)
            if progress is not None:
                progress(done, total)
        if offset is None:
            return embedded


@dataclass
class _Reembed:
    """One page to re-embed: what the target already holds with the same text is
    kept (`vectors`); `changed` rows need the embedder."""

    page: Sequence[DealPoint]
    records: list[DealRecord]
    texts: list[str]
    hashes: list[str]
    vectors: dict[str, np.ndarray]
    changed: list[int]


def _plan_reembed(page: Sequence[DealPoint], target: Collection) -> _Reembed:
    records = [record_from_json(point.payload[RECORD]) for point in page]
    texts = [deal_to_text(record) for record in records]
    hashes = [text_sha256(text) for text in texts]
    # Already in the target with the same text (an interrupted run): keep its vector.
    kept: dict[str, np.ndarray] = {}
    by_workspace: dict[str, list[str]] = {}
    for point in page:
        by_workspace.setdefault(point.workspace_id, []).append(point.point_id)
    wanted = {point.point_id: text_hash for point, text_hash in zip(page, hashes, strict=True)}
    for workspace_id, ids in by_workspace.items():
        for stored in target.retrieve(workspace_id, ids, with_vectors=True):
            if stored.payload.get(TEXT_SHA256) == wanted[stored.point_id] and stored.vector is not None:
                kept[stored.point_id] = stored.vector
    changed = [i for i, point in enumerate(page) if point.point_id not in kept]
    return _Reembed(page, records, texts, hashes, kept, changed)


def _finish_reembed(plan: _Reembed, target: Collection, embedded: np.ndarray | None) -> int:
    if plan.changed:
        assert embedded is not None
        embedded = np.asarray(embedded, dtype=np.float32)
        _check_vectors(embedded, len(plan.changed), target)
        for row, i in enumerate(plan.changed):
            plan.vectors[plan.page[i].point_id] = embedded[row]
    target.upsert(
        [
            DealPoint(point.point_id, plan.vectors[point.point_id], deal_payload(point.workspace_id, record, text_hash))
            for point, record, text_hash in zip(plan.page, plan.records, plan.hashes, strict=True)
        ]
    )
    return len(plan.changed)


def _reembed_page(page: Sequence[DealPoint], target: Collection, embed: Callable[[Sequence[str]], np.ndarray]) -> int:
    plan = _plan_reembed(page, target)
    embedded = embed([plan.texts[i] for i in plan.changed]) if plan.changed else None
    return _finish_reembed(plan, target, embedded)


async def _reembed_async(page: Sequence[DealPoint], target: Collection, embedder: Embedder) -> int:
    plan = _plan_reembed(page, target)
    embedded = await embedder.embed([plan.texts[i] for i in plan.changed]) if plan.changed else None
    return _finish_reembed(plan, target, embedded)
