"""The collections of one embedder in a store, and which of them serves.

Collections: one per embedder version (`server.stores.base`). The newest
*complete* collection whose embedder version is loaded serves, so while a new
embedder's collection is being built (`vectoros reindex`, or `rebuild` here),
searches and writes keep using the old one with the old embedder. `rebuild`
builds the served collection again (to index it, or with a newer embedder)
while it serves, then switches to it. `SimilarityEngine` adds the requests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from server.engines.similarity.embedders import EMBEDDER, Embedder, Embedders
from server.engines.similarity.reembed import reembed_page_async
from server.stores.base import Collection, CollectionInfo, VectorStore
from vectoros.core.deal_text import TEMPLATE_VERSION
from vectoros.core.errors import FailedPrecondition, Unavailable

log = logging.getLogger("vectoros.similarity")

# Called with (collection name, workspace, point ids) after every write, from the
# writing thread.
WriteListener = Callable[[str, str, Sequence[str]], None]


@dataclass
class _State:
    open: dict[str, Collection] = field(default_factory=dict)  # complete collections, by name
    infos: dict[str, CollectionInfo] = field(default_factory=dict)


class CollectionLifeCycle:
    """The collections of `embedder_name` in `store`: `open()` them before serving
    (blocking), `serving()` names the one requests use, `rebuild()` replaces it
    without stopping, `close()` at shutdown. Writers report each write to
    `_notify`, so that a rebuild can redo it in the collection it builds."""

    def __init__(self, store: VectorStore, embedders: Embedders, *, embedder_name: str = EMBEDDER) -> None:
        self.store = store
        self.embedders = embedders
        self.embedder_name = embedder_name
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

    def _notify(self, collection: Collection, workspace_id: str, point_ids: Sequence[str]) -> None:
        for listener in list(self._listeners):
            listener(collection.name, workspace_id, point_ids)


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
                    await reembed_page_async(present, target, embedder)
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
                    await reembed_page_async(page, target, embedder)
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
