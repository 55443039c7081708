"""The deal vector store interface, shared by the embedded (Qdrant Edge) and the
remote (Qdrant server through qdrant-client) adapters.

A store holds collections, one per embedder version (``embedder-v3``), each with
a fixed vector dimension. A collection is *complete* once every deal it should
hold is in it; the engine reads only complete collections, and a collection
being built (by `vectoros reindex` or a rebuild) is written to but not searched.

Isolation is part of the interface: every read and write of deals names the
workspace as its own argument, and the adapters turn it into a must-condition
of the Qdrant filter themselves. Caller-provided filters (`DealFilter`) have no
workspace field, so no filter can widen a request to another workspace. The
only calls that span workspaces are `scroll` (copying a collection) and
`points_count`, which the engine never exposes to a request.

Point ids are UUIDs derived from (workspace, deal id) (`point_id`), so an upsert
of the same deal replaces it and equal deal ids of two workspaces never collide.
"""

from __future__ import annotations

import json
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The namespace of point ids: uuid5(NAMESPACE, json([workspace, deal id])).
POINT_NAMESPACE = uuid.UUID("5b0e4a52-6f7e-4d53-9a0e-0b8f6c1e2d41")

# Payload keys. The first five carry payload indexes (workspace_id as the tenant key).
WORKSPACE = "workspace_id"
INDUSTRY = "industry"
STAGE = "stage"
OUTCOME = "outcome"
VALUE = "value"
DEAL_ID = "deal_id"
TEXT_SHA256 = "text_sha256"
RECORD = "record"
KEYWORD_INDEXES = (INDUSTRY, STAGE, OUTCOME)
OUTCOMES = ("open", "won", "lost")

_NAME = re.compile(r"^(?P<model>[a-z0-9_]+)-v(?P<version>[1-9][0-9]*)(-g(?P<generation>[1-9][0-9]*))?$")


def point_id(workspace_id: str, deal_id: str) -> str:
    """The point id of a deal: a UUID of (workspace, deal id). JSON keeps the pair
    unambiguous whatever characters either id holds."""
    return str(uuid.uuid5(POINT_NAMESPACE, json.dumps([workspace_id, deal_id], ensure_ascii=False)))


def collection_name(embedder_name: str, embedder_version: int, generation: int = 0) -> str:
    """``embedder-v3``: one collection per embedder version; a rebuild of the same
    version (to index it outside the serving process) is ``embedder-v3-g1``."""
    name = f"{embedder_name}-v{embedder_version}" + (f"-g{generation}" if generation else "")
    if not _NAME.match(name):
        raise ValueError(f"invalid collection name {name!r}")
    return name


def parse_collection_name(name: str) -> tuple[str, int, int] | None:
    """(embedder name, version, generation) of a collection name, or None if it is
    not one of ours."""
    match = _NAME.match(name)
    if not match:
        return None
    return match["model"], int(match["version"]), int(match["generation"] or 0)


@dataclass(frozen=True)
class DealPoint:
    """One stored deal: its vector (None when not asked for) and its payload,
    which holds at least `workspace_id` and `deal_id`."""

    point_id: str
    vector: np.ndarray | None
    payload: Mapping[str, Any] = field(repr=False)

    @property
    def workspace_id(self) -> str:
        return self.payload.get(WORKSPACE, "")

    @property
    def deal_id(self) -> str:
        return self.payload.get(DEAL_ID, "")


@dataclass(frozen=True)
class ScoredDeal:
    """A search hit: cosine similarity and the stored point (payload, no vector)."""

    score: float
    point: DealPoint


@dataclass(frozen=True)
class DealFilter:
    """Which deals may match, within the workspace. Empty tuples and None bounds
    do not restrict. There is deliberately no workspace here."""

    industries: tuple[str, ...] = ()
    stages: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    min_value: float | None = None
    max_value: float | None = None


NO_FILTER = DealFilter()


@dataclass(frozen=True)
class CollectionInfo:
    """What the store knows of a collection. `meta` is free-form (for example the
    deal-text template version the vectors were made with)."""

    name: str
    embedder_name: str
    embedder_version: int
    dimension: int
    complete: bool
    meta: Mapping[str, Any] = field(default_factory=dict)
    generation: int = 0

    @property
    def order(self) -> tuple[int, int]:
        """Newer sorts higher: embedder version, then generation."""
        return self.embedder_version, self.generation


class StoreError(Exception):
    """The store cannot do what was asked (for example a dimension mismatch or a
    collection open in another process). Raised at open, not per request."""


class Collection(ABC):
    """One collection of deal vectors. Thread-safe; calls block.

    `holds_gil`: the adapter's calls keep the GIL for their whole duration (the
    embedded store), so running them in a worker thread would add a thread hop
    and free nothing; callers run them inline. False for network I/O.
    """

    info: CollectionInfo
    holds_gil: bool = False

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def dimension(self) -> int:
        return self.info.dimension

    @abstractmethod
    def upsert(self, points: Sequence[DealPoint]) -> None:
        """Insert or replace points (by id). Durable when it returns: the embedded
        store has written its WAL, the remote one waited for the server."""

    @abstractmethod
    def retrieve(
        self,
        workspace_id: str,
        point_ids: Sequence[str],
        *,
        with_vectors: bool = False,
        payload_keys: Sequence[str] | None = None,
    ) -> list[DealPoint]:
        """The points of `workspace_id` among `point_ids`; unknown ids and points of
        other workspaces are left out. Order is not guaranteed. `payload_keys`:
        read only these payload keys (see `payload_selection`); None: all."""

    @abstractmethod
    def search(
        self,
        workspace_id: str,
        vector: np.ndarray,
        *,
        limit: int,
        deal_filter: DealFilter = NO_FILTER,
        min_score: float | None = None,
        exclude_point_ids: Sequence[str] = (),
        hnsw_ef: int | None = None,
        payload_keys: Sequence[str] | None = None,
    ) -> list[ScoredDeal]:
        """The `limit` points of `workspace_id` nearest to `vector` (cosine), best
        first, that pass `deal_filter`, score at least `min_score` and are not in
        `exclude_point_ids`. `hnsw_ef`: candidates kept while walking the HNSW
        graph (None: the store's default); exact search ignores it.
        `payload_keys`: read only these payload keys of each hit (see
        `payload_selection`), for callers that need not decode the stored record;
        None: the whole payload."""

    @abstractmethod
    def delete(self, workspace_id: str, point_ids: Sequence[str]) -> None:
        """Remove the points of `workspace_id` among `point_ids`; points of other
        workspaces stay whatever ids are given."""

    @abstractmethod
    def count(self, workspace_id: str, outcome: str | None = None) -> int:
        """Exact number of points of `workspace_id` (with that outcome, if given)."""

    @abstractmethod
    def scroll(
        self, offset: str | None = None, limit: int = 256, *, with_vectors: bool = True
    ) -> tuple[list[DealPoint], str | None]:
        """Every point of every workspace, `limit` at a time, in id order; returns the
        page and the offset of the next one (None at the end). For copying a
        collection (reindex, rebuild), never for a request."""

    @abstractmethod
    def points_count(self) -> int:
        """Points of all workspaces (for progress and stats of the store, not a request)."""

    def unindexed_count(self) -> int:
        """Points not covered by a vector index yet (searched exactly). 0 when the
        store indexes on its own."""
        return 0

    def optimize(self) -> bool:
        """Build vector indexes now if the store leaves that to its caller. Blocks."""
        return False

    def flush(self) -> None:  # noqa: B027 - optional for adapters
        """Persist everything pending (closing does this too)."""

    @abstractmethod
    def close(self) -> None:
        """Release the collection; further calls fail."""


class VectorStore(ABC):
    """A set of collections. Thread-safe; calls block."""

    @abstractmethod
    def list_collections(self) -> list[CollectionInfo]:
        """Every collection of ours, complete or not, in no particular order."""

    @abstractmethod
    def create_collection(
        self,
        embedder_name: str,
        embedder_version: int,
        dimension: int,
        meta: Mapping[str, Any] | None = None,
        generation: int = 0,
    ) -> Collection:
        """Create an empty, incomplete collection with its payload indexes and open
        it. Raises `StoreError` if it exists."""

    @abstractmethod
    def open_collection(self, name: str) -> Collection:
        """Open an existing collection. Raises `StoreError` if it does not exist or
        cannot be opened."""

    @abstractmethod
    def mark_complete(self, name: str) -> None:
        """Record that the collection holds every deal (the last step of a build)."""

    @abstractmethod
    def drop_collection(self, name: str) -> None:
        """Delete a collection and its data (it must not be open here)."""

    def close(self) -> None:  # noqa: B027 - optional for adapters
        """Release the store's resources (collections are closed by their owners)."""


def complete_collections(store: VectorStore, embedder_name: str) -> list[CollectionInfo]:
    """Complete collections of an embedder, newest (version, generation) first."""
    found = [c for c in store.list_collections() if c.complete and c.embedder_name == embedder_name]
    return sorted(found, key=lambda c: c.order, reverse=True)


def payload_selection(payload_keys: Sequence[str] | None) -> bool | list[str]:
    """The payload to ask Qdrant for (its `with_payload`): all of it for None, else
    the keys asked for, always with `workspace_id` and `deal_id`, which every point
    read back carries (`DealPoint`; the isolation checks read the workspace). A key
    a point does not have is left out of its payload."""
    if payload_keys is None:
        return True
    return list(dict.fromkeys((WORKSPACE, DEAL_ID, *payload_keys)))


def payload_matches(point: DealPoint, workspace_id: str) -> bool:
    """Belt and braces: a point read back must carry the requesting workspace."""
    return point.payload.get(WORKSPACE) == workspace_id


def check_vector(vector: np.ndarray, dimension: int) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (dimension,) or not np.all(np.isfinite(array)):
        raise StoreError(f"vector must be {dimension} finite floats, got shape {array.shape}")
    return array
