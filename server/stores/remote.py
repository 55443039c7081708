"""A Qdrant server or cluster through `qdrant-client`: for deployments that
outgrow one machine (`--qdrant-url`, API key from the environment).

Collections are named ``<prefix><collection name>`` (``vectoros-deals-embedder-v3``)
and describe themselves in Qdrant's collection metadata (``{"vectoros": {...}}``),
which also carries the `complete` flag. Writes wait for the server
(`wait=True`), so an acknowledged upsert is in the server's WAL. The server
indexes on its own, so `optimize()` does nothing here.

No Qdrant server runs in this project's test environment: the adapter is tested
against qdrant-client's in-memory mode (`RemoteStore.in_memory()`), which speaks
the same API but ignores payload indexes and scans points one by one; it is a
test double, not a store to serve from.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from server.stores.base import (
    INDUSTRY,
    KEYWORD_INDEXES,
    NO_FILTER,
    OUTCOME,
    STAGE,
    VALUE,
    WORKSPACE,
    Collection,
    CollectionInfo,
    DealFilter,
    DealPoint,
    ScoredDeal,
    StoreError,
    VectorStore,
    check_vector,
    collection_name,
    parse_collection_name,
    payload_matches,
    payload_selection,
)

DEFAULT_PREFIX = "vectoros-deals-"
META_KEY = "vectoros"


def _workspace(workspace_id: str) -> models.FieldCondition:
    return models.FieldCondition(key=WORKSPACE, match=models.MatchValue(value=workspace_id))


def build_filter(
    workspace_id: str, deal_filter: DealFilter = NO_FILTER, exclude_point_ids: Sequence[str] = ()
) -> models.Filter:
    """The Qdrant filter of a request: the workspace is always the first must-condition."""
    must: list[Any] = [_workspace(workspace_id)]
    for key, values in (
        (INDUSTRY, deal_filter.industries),
        (STAGE, deal_filter.stages),
        (OUTCOME, deal_filter.outcomes),
    ):
        if values:
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=list(values))))
    if deal_filter.min_value is not None or deal_filter.max_value is not None:
        must.append(
            models.FieldCondition(key=VALUE, range=models.Range(gte=deal_filter.min_value, lte=deal_filter.max_value))
        )
    must_not = [models.HasIdCondition(has_id=list(exclude_point_ids))] if exclude_point_ids else None
    return models.Filter(must=must, must_not=must_not)


def _vector(raw: Any) -> np.ndarray | None:
    if raw is None:
        return None
    if isinstance(raw, dict):
        raw = raw.get("")
    return np.asarray(raw, dtype=np.float32)


def _point(record: Any, with_vectors: bool) -> DealPoint:
    return DealPoint(
        point_id=str(record.id),
        vector=_vector(record.vector) if with_vectors else None,
        payload=record.payload or {},
    )


class RemoteCollection(Collection):
    def __init__(self, client: QdrantClient, qdrant_name: str, info: CollectionInfo) -> None:
        self._client = client
        self.qdrant_name = qdrant_name
        self.info = info

    def upsert(self, points: Sequence[DealPoint]) -> None:
        if not points:
            return
        batch = []
        for point in points:
            if point.vector is None:
                raise StoreError(f"point {point.point_id}: a vector is required")
            vector = check_vector(point.vector, self.dimension).tolist()
            batch.append(models.PointStruct(id=point.point_id, vector=vector, payload=dict(point.payload)))
        self._client.upsert(self.qdrant_name, points=batch, wait=True)

    def retrieve(
        self,
        workspace_id: str,
        point_ids: Sequence[str],
        *,
        with_vectors: bool = False,
        payload_keys: Sequence[str] | None = None,
    ) -> list[DealPoint]:
        if not point_ids:
            return []
        records = self._client.retrieve(
            self.qdrant_name, list(point_ids), with_payload=payload_selection(payload_keys), with_vectors=with_vectors
        )
        points = (_point(record, with_vectors) for record in records)
        return [point for point in points if payload_matches(point, workspace_id)]

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
        response = self._client.query_points(
            self.qdrant_name,
            query=check_vector(vector, self.dimension).tolist(),
            query_filter=build_filter(workspace_id, deal_filter, exclude_point_ids),
            limit=limit,
            with_payload=payload_selection(payload_keys),
            score_threshold=min_score,
            search_params=models.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None,
        )
        return [ScoredDeal(float(hit.score), _point(hit, False)) for hit in response.points]

    def delete(self, workspace_id: str, point_ids: Sequence[str]) -> None:
        if point_ids:
            selector = models.FilterSelector(
                filter=models.Filter(must=[_workspace(workspace_id), models.HasIdCondition(has_id=list(point_ids))])
            )
            self._client.delete(self.qdrant_name, points_selector=selector, wait=True)

    def count(self, workspace_id: str, outcome: str | None = None) -> int:
        must: list[Any] = [_workspace(workspace_id)]
        if outcome is not None:
            must.append(models.FieldCondition(key=OUTCOME, match=models.MatchValue(value=outcome)))
        return int(self._client.count(self.qdrant_name, count_filter=models.Filter(must=must), exact=True).count)

    def scroll(
        self, offset: str | None = None, limit: int = 256, *, with_vectors: bool = True
    ) -> tuple[list[DealPoint], str | None]:
        records, next_offset = self._client.scroll(
            self.qdrant_name, limit=limit, offset=offset, with_payload=True, with_vectors=with_vectors
        )
        return [_point(record, with_vectors) for record in records], (None if next_offset is None else str(next_offset))

    def points_count(self) -> int:
        return int(self._client.count(self.qdrant_name, exact=True).count)

    def close(self) -> None:
        pass  # the client belongs to the store


class RemoteStore(VectorStore):
    """Collections on a Qdrant server. `client` is a ready `QdrantClient`."""

    def __init__(self, client: QdrantClient, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self.prefix = prefix
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, url: str, api_key: str | None = None, *, timeout: float = 10.0, prefix: str = DEFAULT_PREFIX):
        """A store on the server at `url` (gRPC port preferred, REST works too)."""
        return cls(QdrantClient(url=url, api_key=api_key or None, timeout=int(timeout)), prefix)

    @classmethod
    def in_memory(cls, prefix: str = DEFAULT_PREFIX) -> RemoteStore:
        """qdrant-client's in-memory mode: the stand-in for a server in tests."""
        return cls(QdrantClient(location=":memory:"), prefix)

    def _info(self, qdrant_name: str) -> CollectionInfo | None:
        name = qdrant_name[len(self.prefix) :]
        if not qdrant_name.startswith(self.prefix) or not parse_collection_name(name):
            return None
        metadata = (self._client.get_collection(qdrant_name).config.metadata or {}).get(META_KEY)
        if not isinstance(metadata, dict) or metadata.get("name") != name:
            return None
        return CollectionInfo(
            name=name,
            embedder_name=metadata["embedder_name"],
            embedder_version=int(metadata["embedder_version"]),
            dimension=int(metadata["dimension"]),
            complete=bool(metadata["complete"]),
            meta=metadata.get("meta", {}),
            generation=int(metadata.get("generation", 0)),
        )

    def list_collections(self) -> list[CollectionInfo]:
        found = []
        for description in self._client.get_collections().collections:
            info = self._info(description.name)
            if info is not None:
                found.append(info)
        return found

    def create_collection(
        self,
        embedder_name: str,
        embedder_version: int,
        dimension: int,
        meta: Mapping[str, Any] | None = None,
        generation: int = 0,
    ) -> Collection:
        name = collection_name(embedder_name, embedder_version, generation)
        qdrant_name = self.prefix + name
        info = CollectionInfo(name, embedder_name, embedder_version, dimension, False, dict(meta or {}), generation)
        with self._lock:
            if self._client.collection_exists(qdrant_name):
                raise StoreError(f"collection {qdrant_name} exists")
            self._client.create_collection(
                qdrant_name,
                vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                # One HNSW graph per workspace, none global: every search filters by
                # workspace (Qdrant's multitenancy guide; see server.stores.edge).
                hnsw_config=models.HnswConfigDiff(m=0, payload_m=16),
                metadata={META_KEY: _metadata(info)},
            )
            with warnings.catch_warnings():
                # The in-memory stand-in warns that payload indexes do nothing there.
                warnings.simplefilter("ignore", UserWarning)
                self._client.create_payload_index(
                    qdrant_name,
                    WORKSPACE,
                    models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
                )
                for key in KEYWORD_INDEXES:  # filter-only: no HNSW links per value
                    self._client.create_payload_index(
                        qdrant_name,
                        key,
                        models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False),
                    )
                self._client.create_payload_index(
                    qdrant_name, VALUE, models.FloatIndexParams(type=models.FloatIndexType.FLOAT, enable_hnsw=False)
                )
        return RemoteCollection(self._client, qdrant_name, info)

    def open_collection(self, name: str) -> Collection:
        qdrant_name = self.prefix + name
        if not self._client.collection_exists(qdrant_name):
            raise StoreError(f"no collection {qdrant_name} on the Qdrant server")
        info = self._info(qdrant_name)
        if info is None:
            raise StoreError(f"collection {qdrant_name} has no VectorOS metadata")
        return RemoteCollection(self._client, qdrant_name, info)

    def mark_complete(self, name: str) -> None:
        qdrant_name = self.prefix + name
        with self._lock:
            info = self._info(qdrant_name)
            if info is None:
                raise StoreError(f"no collection {qdrant_name} on the Qdrant server")
            metadata = {**_metadata(info), "complete": True}
            self._client.update_collection(qdrant_name, metadata={META_KEY: metadata})

    def drop_collection(self, name: str) -> None:
        if not parse_collection_name(name):
            raise StoreError(f"{name!r} is not a collection name")
        self._client.delete_collection(self.prefix + name)

    def close(self) -> None:
        self._client.close()


def _metadata(info: CollectionInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "embedder_name": info.embedder_name,
        "embedder_version": info.embedder_version,
        "dimension": info.dimension,
        "complete": info.complete,
        "meta": dict(info.meta),
        "generation": info.generation,
    }
