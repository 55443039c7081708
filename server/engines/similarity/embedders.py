"""What the similarity engine embeds with: the `Embedder` and `Embedders`
protocols, their implementation over the model registry (`RegistryEmbedders`,
embedding through the process's dynamic batcher), and `check_vectors`, the check
of what an embedder returned against the collection it is for."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from server.engines.embedding import DynamicBatcher
from server.stores.base import Collection
from vectoros.core.embedder import EmbedderModel
from vectoros.core.errors import FailedPrecondition, NotFound, Unavailable

# The embedder's model name in the registry, and the embedder name of its collections.
EMBEDDER = "embedder"


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


class RegistryEmbedder:
    """One loaded embedder version, embedding through the shared batcher (or in a
    worker thread when there is none)."""

    def __init__(self, loaded, batcher: DynamicBatcher | None) -> None:
        model: EmbedderModel = loaded.model
        self.name = loaded.name
        self.version = loaded.version
        self.dimension = model.dimension
        self._model = model
        self._batcher = batcher

    async def embed(self, texts: Sequence[str]):
        if self._batcher is not None:
            return (await self._batcher.embed(self._model, list(texts))).vectors
        return (await asyncio.to_thread(self._model.embed, list(texts))).vectors


class RegistryEmbedders:
    """`current()`: the production embedder (never the canary: a collection holds
    vectors of one version only). `version(v)`: any loaded version, or None."""

    def __init__(self, registry, batcher: DynamicBatcher | None = None, model: str = EMBEDDER) -> None:
        self._registry = registry
        self._batcher = batcher
        self._model = model

    def current(self) -> RegistryEmbedder:
        return RegistryEmbedder(self._registry.select(self._model), self._batcher)

    def version(self, version: int) -> RegistryEmbedder | None:
        try:
            return RegistryEmbedder(self._registry.get(self._model, version), self._batcher)
        except (NotFound, Unavailable):
            return None


def check_vectors(vectors: np.ndarray, rows: int, collection: Collection) -> None:
    if vectors.shape != (rows, collection.dimension):
        raise FailedPrecondition(
            f"the embedder returned vectors of shape {vectors.shape}; collection {collection.name} "
            f"holds {collection.dimension}-dimensional vectors"
        )
    if not np.all(np.isfinite(vectors)):
        raise FailedPrecondition("the embedder returned non-finite vectors")
