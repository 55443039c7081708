"""The Similarity engine: `engine` (the requests) on `lifecycle` (collections, rebuild), with `embedders`,
`points` (the stored payload) and `reembed` (offline reindex); `runtime` (its life in a server) is imported apart."""

from server.engines.similarity.embedders import (
    EMBEDDER,
    Embedder,
    EmbedderRef,
    Embedders,
    RegistryEmbedder,
    RegistryEmbedders,
)
from server.engines.similarity.engine import (
    CLOSED,
    DEFAULT_TOP_K,
    MAX_DELETE,
    MAX_QUERY_TEXT_BYTES,
    MAX_TOP_K,
    MAX_UPSERT,
    FindResult,
    Match,
    Query,
    SimilarityEngine,
    Stats,
    Summary,
    UpsertResult,
    summarize,
)
from server.engines.similarity.lifecycle import CollectionLifeCycle, WriteListener
from server.engines.similarity.points import deal_payload, text_sha256
from server.engines.similarity.reembed import ReindexResult, reindex

__all__ = [
    "CLOSED",
    "DEFAULT_TOP_K",
    "EMBEDDER",
    "MAX_DELETE",
    "MAX_QUERY_TEXT_BYTES",
    "MAX_TOP_K",
    "MAX_UPSERT",
    "CollectionLifeCycle",
    "Embedder",
    "EmbedderRef",
    "Embedders",
    "FindResult",
    "Match",
    "Query",
    "RegistryEmbedder",
    "RegistryEmbedders",
    "ReindexResult",
    "SimilarityEngine",
    "Stats",
    "Summary",
    "UpsertResult",
    "WriteListener",
    "deal_payload",
    "reindex",
    "summarize",
    "text_sha256",
]
