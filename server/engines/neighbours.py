"""Serving-side similarity features: the k most similar closed deals of the
same workspace, looked up in the similarity store (rules and arithmetic in
`vectoros.core.similar_features`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from vectoros.core.similar_features import SimilaritySpec, features_from_matches

log = logging.getLogger("vectoros.scoring")


class SimilarNeighbours:
    """Serving-side features from the similarity store (a `SimilarityEngine`).

    `features(records, spec)` looks up each deal's stored vector in its workspace
    and the k most similar closed deals of the workspace (the deal excluded), and
    aggregates them; NaN for a deal it cannot look up (see the module docstring).
    Never embeds. `registry` (optional) is used to check that the served
    collection's embedder is the artifact the scorer was trained with.
    """

    def __init__(self, engine, registry=None) -> None:
        self.engine = engine
        self.registry = registry
        self._warned: set[str] = set()

    def _warn(self, reason: str) -> None:
        if reason not in self._warned:  # once per reason, not once per request
            self._warned.add(reason)
            log.warning("similarity features unavailable: %s", reason)

    def _same_embedder(self, spec: SimilaritySpec) -> bool:
        from vectoros.core.errors import VectorOSError

        try:
            _, embedder = self.engine.serving()
        except VectorOSError as exc:
            self._warn(str(exc))
            return False
        if self.registry is None:
            return True
        try:
            manifest = self.registry.get(embedder.name, embedder.version).manifest
        except VectorOSError as exc:
            self._warn(str(exc))
            return False
        files: Mapping[str, Mapping[str, object]] = manifest.files
        if any(entry.get("sha256") == spec.embedder_fingerprint for entry in files.values()):
            return True
        self._warn(
            f"the served embedder ({embedder.name} v{embedder.version}) is not the one the scorer was trained "
            f"with (fingerprint {spec.embedder_fingerprint[:12]}); retrain the scorer with it"
        )
        return False

    async def features(self, records: Sequence, spec: SimilaritySpec) -> np.ndarray:
        """float64 [len(records), 2]: (similar_win_rate, similar_mean_score) per deal."""
        # Imported here: the feature code (training too) reads this module and must
        # not pull in grpc (vectoros.core.errors) or the store adapters.
        from server.engines.similarity import Query
        from server.stores.base import DealFilter
        from vectoros.core.errors import NotFound, VectorOSError

        out = np.full((len(records), 2), np.nan)
        if not records or not self._same_embedder(spec):
            return out
        closed = DealFilter(outcomes=("won", "lost"))
        for i, record in enumerate(records):
            if not record.workspace_id or not record.deal_id:
                continue
            try:
                found = await self.engine.find(
                    record.workspace_id, Query(deal_id=record.deal_id), deal_filter=closed, top_k=spec.k
                )
            except NotFound:  # not stored in its workspace (yet)
                continue
            except VectorOSError as exc:  # the store is unavailable, ...
                self._warn(str(exc))
                continue
            out[i] = features_from_matches([(m.score, m.deal.outcome.value == "won") for m in found.matches])
        return out
