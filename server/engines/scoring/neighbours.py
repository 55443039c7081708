"""Serving-side similarity features: the k most similar closed deals of the same
workspace, looked up in the similarity store (rules and arithmetic in
`vectoros.core.similar_features`).

A `NeighbourLookup` serves one request: it resolves the serving collection
once, checks (once per collection and scorer version, then cached) that the
collection's embedder is the artifact the scorer was trained with, and looks
up a whole batch with `SimilarityEngine.closed_neighbours`, which reads only
each neighbour's outcome. Blocking: the scoring engine runs it in a worker
thread. A deal not stored in its workspace, a missing workspace id, a store
or embedder that is not available, or a served embedder other than the
scorer's all give NaN, and the deal still scores.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from vectoros.core.deals import DealRecord
from vectoros.core.errors import VectorOSError
from vectoros.core.similar_features import SimilaritySpec, features_from_matches

log = logging.getLogger("vectoros.scoring")


class SimilarNeighbours:
    """The similarity store seen by the scorer: `engine` is the `SimilarityEngine`,
    `registry` (optional) the model registry, to compare the served collection's
    embedder with the scorer's (`SimilaritySpec.embedder_fingerprint`)."""

    def __init__(self, engine, registry=None) -> None:
        self.engine = engine
        self.registry = registry
        self._warned: set[str] = set()
        # (collection, embedder name, embedder version, fingerprint) -> same artifact?
        self._same: dict[tuple[str, str, int, str], bool] = {}

    def warn(self, reason: str) -> None:
        if reason not in self._warned:  # once per reason, not once per request
            self._warned.add(reason)
            log.warning("similarity features unavailable: %s", reason)

    def session(self) -> NeighbourLookup:
        """The lookups of one request, against the collection serving now."""
        return NeighbourLookup(self)

    def same_embedder(self, collection_name: str, embedder, spec: SimilaritySpec) -> bool:
        key = (collection_name, embedder.name, embedder.version, spec.embedder_fingerprint)
        known = self._same.get(key)
        if known is not None:
            return known
        if self.registry is None:
            return True
        try:
            manifest = self.registry.get(embedder.name, embedder.version).manifest
        except VectorOSError as exc:  # not loaded now: try again next request
            self.warn(str(exc))
            return False
        files: Mapping[str, Mapping[str, object]] = manifest.files
        same = any(entry.get("sha256") == spec.embedder_fingerprint for entry in files.values())
        if not same:
            self.warn(
                f"the served embedder ({embedder.name} v{embedder.version}) is not the one the scorer was trained "
                f"with (fingerprint {spec.embedder_fingerprint[:12]}); retrain the scorer with it"
            )
        self._same[key] = same
        return same


class NeighbourLookup:
    """One request's view of the store (see the module docstring)."""

    def __init__(self, source: SimilarNeighbours) -> None:
        self.source = source
        self._serving: tuple[object, object] | None = None
        self._unavailable = False

    def _collection(self):
        if self._serving is None and not self._unavailable:
            try:
                self._serving = self.source.engine.serving()
            except VectorOSError as exc:
                self.source.warn(str(exc))
                self._unavailable = True
        return self._serving

    def features(self, records: Sequence[DealRecord], spec: SimilaritySpec) -> np.ndarray:
        """float64 [len(records), 2]: (similar_win_rate, similar_mean_score) per deal."""
        out = np.full((len(records), 2), np.nan)
        serving = self._collection()
        if not records or serving is None:
            return out
        collection, embedder = serving
        if not self.source.same_embedder(collection.name, embedder, spec):
            return out
        try:
            found = self.source.engine.closed_neighbours(
                [(record.workspace_id, record.deal_id) for record in records], spec.k, collection
            )
        except VectorOSError as exc:  # the store is unavailable, ...
            self.source.warn(str(exc))
            return out
        for i, matches in enumerate(found):
            if matches is not None:
                out[i] = features_from_matches(matches)
        return out
