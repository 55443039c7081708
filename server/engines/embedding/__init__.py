"""Embeddings served: `batcher` (the dynamic batcher, one per process) here; the
model, its spec and the text limits are the shared artifact in `vectoros.core.embedder`."""

from server.engines.embedding.batcher import BatcherConfig, BatcherStats, DynamicBatcher
from vectoros.core.embedder import (
    MAX_TEXT_BYTES,
    MAX_TEXTS,
    EmbedBatchResult,
    EmbedderModel,
    EmbedderSettings,
    check_texts,
    load_embedder,
)

__all__ = [
    "MAX_TEXTS",
    "MAX_TEXT_BYTES",
    "BatcherConfig",
    "BatcherStats",
    "DynamicBatcher",
    "EmbedBatchResult",
    "EmbedderModel",
    "EmbedderSettings",
    "check_texts",
    "load_embedder",
]
