"""Re-embedding stored deals: `reindex`, the offline build of a new embedder
version's collection (`vectoros reindex`), and the page steps it shares with the
in-server rebuild (`reembed_page`, `reembed_page_async`). Deals are re-rendered
from their stored records with the current template; a deal already in the
target with the same text hash keeps its vector, so an interrupted run resumes
cheaply."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from server.engines.similarity.embedders import EMBEDDER, Embedder, check_vectors
from server.engines.similarity.points import deal_payload, text_sha256
from server.stores.base import RECORD, TEXT_SHA256, Collection, DealPoint, VectorStore
from vectoros.core.deal_codec.payload import record_from_json
from vectoros.core.deal_text import TEMPLATE_VERSION, deal_to_text
from vectoros.core.deals import DealRecord
from vectoros.core.errors import FailedPrecondition


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
            embedded += reembed_page(page, target, embed)
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
        check_vectors(embedded, len(plan.changed), target)
        for row, i in enumerate(plan.changed):
            plan.vectors[plan.page[i].point_id] = embedded[row]
    target.upsert(
        [
            DealPoint(point.point_id, plan.vectors[point.point_id], deal_payload(point.workspace_id, record, text_hash))
            for point, record, text_hash in zip(plan.page, plan.records, plan.hashes, strict=True)
        ]
    )
    return len(plan.changed)


def reembed_page(page: Sequence[DealPoint], target: Collection, embed: Callable[[Sequence[str]], np.ndarray]) -> int:
    plan = _plan_reembed(page, target)
    embedded = embed([plan.texts[i] for i in plan.changed]) if plan.changed else None
    return _finish_reembed(plan, target, embedded)


async def reembed_page_async(page: Sequence[DealPoint], target: Collection, embedder: Embedder) -> int:
    plan = _plan_reembed(page, target)
    embedded = await embedder.embed([plan.texts[i] for i in plan.changed]) if plan.changed else None
    return _finish_reembed(plan, target, embedded)
