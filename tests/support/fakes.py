"""Fakes that make fast tests of something else: an embedder and a scorer that
run no model, and a registry that serves fixed versions. Tests of the models
themselves use the real ones (tests/support/model_kit.py, the cached export)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from server.engines.scoring import DealScoreResult, Factor, RiskThresholds
from server.models.registry import LoadedModel, ModelStatus, canary_bucket
from vectoros.core.deals import DealRecord
from vectoros.core.errors import InvalidInput, NotFound, Unavailable


class HashEmbedder:
    """A unit vector per text, seeded by its hash (and by the version when `salted`,
    so that versions disagree as real ones would); records what it embedded."""

    name = "embedder"

    def __init__(self, version: int = 1, dimension: int = 16, *, salted: bool = True) -> None:
        self.version = version
        self.dimension = dimension
        self.salted = salted
        self.embedded: list[str] = []

    def vector(self, text: str) -> np.ndarray:
        key = f"{self.version}:{text}" if self.salted else text
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
        vector = np.random.default_rng(seed).standard_normal(self.dimension).astype(np.float32)
        return vector / np.linalg.norm(vector)

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded.extend(texts)
        if not texts:
            return np.empty((0, self.dimension), np.float32)
        return np.stack([self.vector(text) for text in texts])

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_sync(texts)


class Embedders:
    """The embedder versions "loaded" (the `Embedders` protocol of the similarity
    engine): the last one given is production."""

    def __init__(self, *embedders: HashEmbedder) -> None:
        self.by_version = {e.version: e for e in embedders}
        self.production = embedders[-1] if embedders else None

    def current(self) -> HashEmbedder:
        if self.production is None:
            raise Unavailable("model 'embedder' is not serving: not loaded yet")
        return self.production

    def version(self, version: int) -> HashEmbedder | None:
        return self.by_version.get(version)


@dataclass
class _Spec:
    features: list[str]


class FakeScorer:
    """A scorer with no model: the win probability is a logistic function of the
    deal's value and its rep probability (`offset` moves it, so versions differ),
    with three factors. Enough for servicer tests of mapping, routing and errors."""

    FEATURES = ("value", "probability", "contact_count")

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self.spec = _Spec(list(self.FEATURES))
        self.risk = RiskThresholds(0.3, 0.6)
        self.similarity = None
        self.calls: list[int] = []

    def score(self, records: Sequence[DealRecord], top_factors: int = 5, now: datetime | None = None,
              similar: np.ndarray | None = None) -> list[DealScoreResult]:
        self.calls.append(len(records))
        results = []
        for record in records:
            contributions = (
                ("value", f"{record.value:g}", math.log1p(record.value) / 10 - 1.0),
                ("probability", "missing" if record.probability is None else f"{record.probability:g}",
                 0.0 if record.probability is None else 2.0 * (record.probability - 0.5)),
                ("contact_count", str(record.contact_count), 0.1 * record.contact_count),
            )
            margin = self.offset + sum(c for _, _, c in contributions)
            probability = 1.0 / (1.0 + math.exp(-margin))
            top = sorted(contributions, key=lambda c: abs(c[2]), reverse=True)[:top_factors]
            results.append(DealScoreResult(
                deal_id=record.deal_id, win_probability=probability, risk_level=self.risk.level(probability),
                top_factors=tuple(Factor(name, text, value) for name, text, value in top),
                margin=margin, bias=self.offset,
            ))
        return results


@dataclass
class FixedRegistry:
    """A model registry over versions built in memory (no repository): `versions`
    maps (name, version) to the model; `production` and `canary` name versions."""

    versions: dict[tuple[str, int], object] = field(default_factory=dict)
    production: dict[str, int] = field(default_factory=dict)
    canary: dict[str, tuple[int, float]] = field(default_factory=dict)

    def add(self, name: str, version: int, model: object, *, production: bool = False) -> None:
        self.versions[(name, version)] = model
        if production:
            self.production[name] = version

    def _loaded(self, name: str, version: int, label: str = "") -> LoadedModel:
        model = self.versions.get((name, version))
        if model is None:
            raise NotFound(f"model_version: {name} version {version} is not loaded")
        return LoadedModel(name=name, version=version, manifest=None, model=model, label=label)

    def select(self, name: str, routing_key: str | None = None) -> LoadedModel:
        if name not in self.production:
            raise Unavailable(f"model {name!r} is not serving: not loaded yet")
        canary = self.canary.get(name)
        if canary is not None and routing_key is not None and canary_bucket(routing_key) < canary[1] * 100:
            return self._loaded(name, canary[0], "canary")
        return self._loaded(name, self.production[name], "production")

    def get(self, name: str, version: int) -> LoadedModel:
        return self._loaded(name, version)

    def resolve(self, name: str, model_version: int = 0, routing_key: str | None = None) -> LoadedModel:
        if model_version < 0:  # the real registry's rule
            raise InvalidInput("model_version", "must be >= 0 (0 serves production)")
        return self.select(name, routing_key) if model_version == 0 else self.get(name, model_version)

    def status(self, name: str) -> ModelStatus:
        canary = self.canary.get(name)
        return ModelStatus(
            production=self.production.get(name), canary=canary[0] if canary else None,
            canary_percent=canary[1] if canary else 0.0,
            loaded_versions=tuple(sorted(v for n, v in self.versions if n == name)), last_error=None,
        )
