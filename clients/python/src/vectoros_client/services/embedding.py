"""EmbeddingService: texts and deals to unit-length float32 vectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vectoros_client import rpcs
from vectoros_client.calls import Unary
from vectoros_client.v1 import embedding_pb2
from vectoros_client.values import DealLike, ModelInfo, ModelRef, deal_messages


@dataclass(frozen=True)
class Embeddings:
    """Vectors in request order: `vectors` is float32 [inputs, dimension], each row
    L2-normalised. `template_version` is the deal-to-text template (EmbedDeals only)."""

    vectors: np.ndarray
    token_counts: tuple[int, ...]
    truncated: tuple[bool, ...]
    model: ModelRef
    template_version: str
    proto: embedding_pb2.EmbedResponse | embedding_pb2.EmbedDealsResponse = field(repr=False, compare=False)

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])


@dataclass(frozen=True)
class EmbedderInfo:
    """The embedder that serves requests."""

    info: ModelInfo
    dimension: int
    max_tokens: int
    template_version: str
    precision: str
    proto: embedding_pb2.EmbeddingServiceGetModelInfoResponse = field(repr=False, compare=False)


def _embeddings(response: embedding_pb2.EmbedResponse | embedding_pb2.EmbedDealsResponse) -> Embeddings:
    vectors = np.empty((len(response.embeddings), response.dimension), dtype=np.float32)
    for row, embedding in enumerate(response.embeddings):
        vectors[row] = embedding.values
    return Embeddings(
        vectors=vectors,
        token_counts=tuple(e.token_count for e in response.embeddings),
        truncated=tuple(e.truncated for e in response.embeddings),
        model=ModelRef.from_proto(response.model),
        template_version=getattr(response, "template_version", ""),
        proto=response,
    )


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts: must be a sequence of strings, not one string (wrap it in a list)")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}]: must be a str, got {type(text).__name__}")
    return list(texts)


def embed(texts: Sequence[str]) -> Unary[Embeddings]:
    return Unary(rpcs.EMBED, embedding_pb2.EmbedRequest(texts=_texts(texts)), _embeddings)


def embed_deals(deals: Sequence[DealLike]) -> Unary[Embeddings]:
    request = embedding_pb2.EmbedDealsRequest(deals=deal_messages(deals))
    return Unary(rpcs.EMBED_DEALS, request, _embeddings)


def embedder_info() -> Unary[EmbedderInfo]:
    def parse(response: embedding_pb2.EmbeddingServiceGetModelInfoResponse) -> EmbedderInfo:
        return EmbedderInfo(ModelInfo.from_proto(response.info), response.dimension, response.max_tokens,
                            response.template_version, response.precision, response)

    return Unary(rpcs.EMBEDDER_INFO, embedding_pb2.EmbeddingServiceGetModelInfoRequest(), parse)
