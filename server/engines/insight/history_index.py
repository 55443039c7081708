"""`HistoryIndex`: every workspace's `WorkspaceHistory` over the similarity store,
kept current from the store's write notifications, so a request never scans the
store."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from server.engines.insight.history import HistoryAggregate, StoredDeal, WorkspaceHistory
from server.engines.similarity import SimilarityEngine
from server.stores.base import RECORD, DealPoint, point_id
from vectoros.core.deal_codec.payload import record_from_json
from vectoros.core.deals import DealRecord, Outcome

log = logging.getLogger("vectoros.insight")


@dataclass
class _Workspace:
    deals: dict[str, StoredDeal] = field(default_factory=dict)  # by point id
    aggregate: HistoryAggregate = field(default_factory=HistoryAggregate)
    generation: int = 0
    summary: WorkspaceHistory | None = None

    def put(self, point_id: str, deal: StoredDeal | None) -> None:
        old = self.deals.pop(point_id, None)
        if old is not None:
            self.aggregate.remove(old)
        if deal is not None:
            self.deals[point_id] = deal
            self.aggregate.add(deal)


class HistoryIndex:
    """Per-workspace `WorkspaceHistory` over the similarity store, kept current
    without scanning the store per request.

    - Built lazily with one scroll over the served collection (every workspace at
      once: the store has no per-workspace scan), on the first request.
    - The similarity engine calls `_on_write(collection, workspace, point_ids)`
      after every upsert or delete; the ids are noted per workspace. A workspace
      catches up when it is next asked for: it reads its noted ids back
      (`Collection.retrieve`) and drops those that are gone. So a write costs a
      set insertion, and a request after writes one retrieve of what changed.
    - Each workspace keeps a `HistoryAggregate` updated deal by deal; its summary
      is rebuilt (cheaply) only when the workspace changed.
    - When the served collection changes (a rebuild or a new embedder), the index
      is built again.

    Thread-safe; every method blocks (call from a worker thread).
    """

    def __init__(self, similarity: SimilarityEngine) -> None:
        self._similarity = similarity
        self._lock = threading.Lock()  # the index; held during a catch-up
        self._dirty_lock = threading.Lock()  # noted writes only: writers never wait for a catch-up
        self._dirty: dict[str, set[str]] = {}
        self._collection: str | None = None
        self._workspaces: dict[str, _Workspace] = {}
        similarity.add_write_listener(self._on_write)

    def close(self) -> None:
        self._similarity.remove_write_listener(self._on_write)

    def _on_write(self, collection_name: str, workspace_id: str, point_ids: Sequence[str]) -> None:
        # Writes to any collection count: a catch-up reads the served one.
        with self._dirty_lock:
            self._dirty.setdefault(workspace_id, set()).update(point_ids)

    def _take_dirty(self, workspace_id: str) -> set[str]:
        with self._dirty_lock:
            return self._dirty.pop(workspace_id, set())

    def _build(self, collection) -> None:
        with self._dirty_lock:
            self._dirty.clear()  # whatever is written from here on is read back later
        by_workspace: dict[str, _Workspace] = {}
        offset = None
        while True:
            points, offset = collection.scroll(offset, 512, with_vectors=False)
            for point in points:
                if point.workspace_id and RECORD in point.payload:
                    state = by_workspace.setdefault(point.workspace_id, _Workspace())
                    state.put(point.point_id, StoredDeal.from_payload(point.payload))
            if offset is None:
                break
        self._workspaces = by_workspace
        self._collection = collection.name
        log.info("workspace history built", extra={"deals": sum(len(w.deals) for w in by_workspace.values())})

    def _current(self, workspace_id: str) -> _Workspace:
        collection, _ = self._similarity.serving()
        if self._collection != collection.name:
            self._build(collection)
        state = self._workspaces.setdefault(workspace_id, _Workspace())
        dirty = list(self._take_dirty(workspace_id))
        if not dirty:
            return state
        found: dict[str, DealPoint] = {}
        for start in range(0, len(dirty), 1000):
            for point in collection.retrieve(workspace_id, dirty[start : start + 1000]):
                if point.workspace_id == workspace_id and RECORD in point.payload:
                    found[point.point_id] = point
        for pid in dirty:
            point = found.get(pid)
            state.put(pid, StoredDeal.from_payload(point.payload) if point is not None else None)
        state.generation += 1
        state.summary = None
        return state

    def ensure_built(self) -> None:
        """Build the index now if the served collection has none yet (one scroll)."""
        with self._lock:
            collection, _ = self._similarity.serving()
            if self._collection != collection.name:
                self._build(collection)

    def history(self, workspace_id: str) -> WorkspaceHistory:
        return self.lookup(workspace_id)[0]

    def lookup(self, workspace_id: str, deal_id: str | None = None) -> tuple[WorkspaceHistory, StoredDeal | None]:
        """The workspace's history and, if asked, the stored facts of one deal."""
        with self._lock:
            state = self._current(workspace_id)
            if state.summary is None:
                state.summary = state.aggregate.summary(state.generation)
            stored = state.deals.get(point_id(workspace_id, deal_id)) if deal_id is not None else None
            return state.summary, stored

    def open_deal_ids(self, workspace_id: str) -> list[str]:
        """Deal ids of the workspace's stored open deals."""
        with self._lock:
            state = self._current(workspace_id)
            return [d.deal_id for d in state.deals.values() if d.outcome == Outcome.OPEN.value]

    def stored_records(self, workspace_id: str, deal_ids: Sequence[str]) -> dict[str, DealRecord]:
        """Full stored records of deals of the workspace (unknown ids left out)."""
        collection, _ = self._similarity.serving()
        found: dict[str, DealRecord] = {}
        ids = [point_id(workspace_id, d) for d in deal_ids]
        for start in range(0, len(ids), 256):
            for point in collection.retrieve(workspace_id, ids[start : start + 256]):
                if point.workspace_id == workspace_id and RECORD in point.payload:
                    record = record_from_json(point.payload[RECORD])
                    found[record.deal_id] = record
        return found

