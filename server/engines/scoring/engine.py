"""The one scoring path: every RPC that shows a win probability calls `ScoringEngine`.

ScoreDeal, ScoreDeals, GenerateInsights and ScanPipeline all score through
`ScoringEngine.score`, so the same deal gets the same probability from each.
Per request it:

1. resolves the scorer version per deal (the request's `model_version`, or
   production / canary by deal id, so a deal scores the same alone or in a
   batch);
2. for a scorer trained with the similarity features, resolves the serving
   collection once and checks, once per collection and scorer, that its
   embedder is the one the scorer was trained with;
3. looks up the neighbours of every deal of the batch in one worker thread
   (qdrant-edge holds the GIL for each call; a thread lets the event loop
   answer other calls between them), reading only each neighbour's outcome;
4. runs the model per version group, in that same thread; inline only for a
   few deals with no neighbours to look up (cheaper than a thread hop).

No grpc here: the servicers convert protobuf to `DealRecord` and back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from server.engines.scoring.model import DealScoreResult, ScorerModel
from server.engines.scoring.neighbours import SimilarNeighbours
from server.models.registry import LoadedModel
from vectoros.core.deals import DealRecord

MODEL = "scorer"
# One deal costs ~0.1 ms to score: cheaper inline than handed to a thread.
INLINE_DEALS = 32


@dataclass(frozen=True)
class ScoredDeal:
    """A deal's score and the loaded scorer version that produced it."""

    result: DealScoreResult
    loaded: LoadedModel

    @property
    def model_name(self) -> str:
        return self.loaded.name

    @property
    def model_version(self) -> int:
        return self.loaded.version


@dataclass
class _Group:
    loaded: LoadedModel
    indexes: list[int]


class ScoringEngine:
    """Scores deals with the served scorer (see the module docstring).

    `registry` resolves the scorer (`resolve(name, model_version, routing_key)`);
    `similarity` (optional) is the similarity engine whose store supplies the
    similarity features; without it they are NaN."""

    def __init__(self, registry, similarity=None) -> None:
        self.registry = registry
        self.neighbours = SimilarNeighbours(similarity, registry) if similarity is not None else None

    def resolve(self, record: DealRecord, model_version: int = 0) -> LoadedModel:
        """The scorer version that scores `record`: `model_version`, or (0) production
        or canary by deal id. Hold on to it for the whole request."""
        return self.registry.resolve(MODEL, model_version, record.deal_id)

    def _groups(
        self, records: Sequence[DealRecord], model_version: int, resolved: Sequence[LoadedModel] | None
    ) -> dict[int, _Group]:
        groups: dict[int, _Group] = {}
        for i, record in enumerate(records):
            loaded = resolved[i] if resolved is not None else self.resolve(record, model_version)
            group = groups.get(loaded.version)
            if group is None:
                groups[loaded.version] = _Group(loaded, [i])
            else:
                group.indexes.append(i)
        return groups

    async def score(
        self,
        records: Sequence[DealRecord],
        *,
        model_version: int = 0,
        top_factors: int = 5,
        now: datetime | None = None,
        resolved: Sequence[LoadedModel] | None = None,
    ) -> list[ScoredDeal]:
        """Score `records` (checked) in order; `now` overrides their snapshot times.
        `resolved`: the versions `resolve` gave for them, when the caller needed the
        version before scoring (a cache key); else they are resolved here."""
        if not records:
            return []
        if resolved is not None and len(resolved) != len(records):
            raise ValueError("resolved: one version per record")
        groups = self._groups(records, model_version, resolved)
        similar = self.neighbours is not None and any(g.loaded.model.similarity for g in groups.values())
        if len(records) <= INLINE_DEALS and not similar:
            return self._score(records, groups, top_factors, now)
        return await asyncio.to_thread(self._score, records, groups, top_factors, now)

    def _score(
        self, records: Sequence[DealRecord], groups: dict[int, _Group], top_factors: int, now: datetime | None
    ) -> list[ScoredDeal]:
        out: list[ScoredDeal | None] = [None] * len(records)
        lookups = self.neighbours.session() if self.neighbours is not None else None
        for group in groups.values():
            model: ScorerModel = group.loaded.model
            members = [records[i] for i in group.indexes]
            features: np.ndarray | None = None
            if model.similarity is not None and lookups is not None:
                features = lookups.features(members, model.similarity)
            results = model.score(members, top_factors, now=now, similar=features)
            for i, result in zip(group.indexes, results, strict=True):
                out[i] = ScoredDeal(result, group.loaded)
        return out  # type: ignore[return-value]
