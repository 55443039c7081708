"""The scorer's similarity features: what happened to the deals most like this one.

Two features, appended to the scorer's matrix when the scorer was trained with
an embedder (`vectoros train scorer --embedder DIR`):

- `similar_win_rate`: the similarity-weighted win rate of the k most similar
  closed (won or lost) deals of the same workspace: won / (won + lost), each
  neighbour weighted by its cosine similarity clipped at 0 (when every
  neighbour has a similarity <= 0, the plain rate), the rule of the Similarity
  engine's summary.
- `similar_mean_score`: their mean cosine similarity.

Both are NaN when there is no such neighbour (the trees route NaN down a
learned branch).

As of the snapshot: a neighbour counts only if it is another deal of the same
workspace that closed strictly before the snapshot, so neither the deal's own
outcome nor anything decided later is read. Training applies the rule with
`similarity_features` (NumPy, every record at once); serving gets it from the
store, which holds only outcomes recorded up to now, the request's snapshot,
and searches the deal's stored vector with the deal itself excluded
(`server.engines.scoring.neighbours`). Both end in `_aggregate`, so
the arithmetic is one code path.

Serving never embeds: a deal that is not stored in its workspace, a missing
workspace id, a store or embedder that is not available, or a served embedder
other than the one the scorer was trained with all give NaN, and the deal
still scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SIMILAR_WIN_RATE = "similar_win_rate"
SIMILAR_MEAN_SCORE = "similar_mean_score"
SIMILARITY_FEATURES = (SIMILAR_WIN_RATE, SIMILAR_MEAN_SCORE)
DEFAULT_K = 10
_SPEC_KEYS = ("k", "template_version", "embedder_name", "embedder_version", "embedder_fingerprint")
# Rows of queries compared at once: a block of 1,024 against 50,000 deals is a
# 200 MB float32 matrix.
_BLOCK = 1024


@dataclass(frozen=True)
class SimilaritySpec:
    """How a scorer's similarity features were made (the feature spec's `similarity`).

    `embedder_fingerprint` is the SHA-256 of the embedder weights used in
    training; serving computes the features only while the served collection's
    embedder is the same artifact. `embedder_version` is None when training used
    an artifact that was not yet published."""

    k: int
    template_version: str
    embedder_name: str
    embedder_version: int | None
    embedder_fingerprint: str

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= 100:
            raise ValueError("similarity.k: must be an integer in [1, 100]")
        for key in ("template_version", "embedder_name", "embedder_fingerprint"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ValueError(f"similarity.{key}: must be a non-empty string")
        version = self.embedder_version
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise ValueError("similarity.embedder_version: must be null or an integer >= 1")

    def to_dict(self) -> dict[str, object]:
        return {key: getattr(self, key) for key in _SPEC_KEYS}

    @classmethod
    def from_dict(cls, data: object) -> SimilaritySpec:
        """Strict: exactly the known keys; raises ValueError naming the key."""
        if not isinstance(data, dict):
            raise ValueError("similarity: must be an object")
        for key in data:
            if key not in _SPEC_KEYS:
                raise ValueError(f"similarity.{key}: unknown key")
        for key in _SPEC_KEYS:
            if key not in data:
                raise ValueError(f"similarity.{key}: missing key")
        return cls(**data)


# --- the arithmetic -----------------------------------------------------------------


def _aggregate(scores: np.ndarray, won: np.ndarray) -> np.ndarray:
    """[N, 2] (weighted win rate, mean score) from neighbour scores [N, k] (NaN
    where a row has fewer than k neighbours) and outcomes won [N, k] (bool)."""
    scores = np.asarray(scores, dtype=np.float64)
    present = ~np.isnan(scores)
    count = present.sum(axis=1)
    weights = np.where(present, np.clip(np.nan_to_num(scores, nan=0.0), 0.0, None), 0.0)
    won = np.asarray(won, dtype=bool) & present
    won_weight = (weights * won).sum(axis=1)
    closed_weight = weights.sum(axis=1)
    plain = np.divide(won.sum(axis=1), count, out=np.full(len(count), np.nan), where=count > 0)
    weighted = np.divide(won_weight, closed_weight, out=np.zeros(len(count)), where=closed_weight > 0)
    rate = np.where(closed_weight > 0, weighted, plain)
    mean = np.divide(np.nansum(scores, axis=1), count, out=np.full(len(count), np.nan), where=count > 0)
    return np.stack([rate, mean], axis=1)


def features_from_matches(matches: Sequence[tuple[float, bool]]) -> tuple[float, float]:
    """(similar_win_rate, similar_mean_score) of closed neighbours given as
    (cosine similarity, won) pairs; (NaN, NaN) when there are none."""
    if not matches:
        return math.nan, math.nan
    scores = np.array([[score for score, _ in matches]], dtype=np.float64)
    won = np.array([[outcome for _, outcome in matches]], dtype=bool)
    rate, mean = _aggregate(scores, won)[0].tolist()
    return rate, mean


def similarity_features(
    query_vectors: np.ndarray,
    neighbour_vectors: np.ndarray,
    neighbour_won: np.ndarray,
    neighbour_closed_at: np.ndarray,
    as_of: np.ndarray,
    k: int = DEFAULT_K,
    *,
    query_ids: Sequence[str] | None = None,
    neighbour_ids: Sequence[str] | None = None,
    query_workspaces: Sequence[str] | None = None,
    neighbour_workspaces: Sequence[str] | None = None,
) -> np.ndarray:
    """The two similarity features of each query, float64 [N, 2] (NaN when none).

    `query_vectors` [N, D] and `neighbour_vectors` [M, D] are unit vectors (their
    dot product is the cosine similarity). Neighbours are closed deals:
    `neighbour_won` [M] bool, `neighbour_closed_at` [M] and `as_of` [N] in Unix
    seconds. For query i, neighbour j may count only if it closed strictly before
    `as_of[i]`, its id differs from the query's (`query_ids` / `neighbour_ids`:
    the deal's own outcome is never read, whichever snapshot of it is queried),
    and its workspace equals the query's (when workspaces are given). The k most
    similar of those are aggregated.
    """
    queries = np.asarray(query_vectors, dtype=np.float32)
    pool = np.asarray(neighbour_vectors, dtype=np.float32)
    won = np.asarray(neighbour_won, dtype=bool)
    closed_at = np.asarray(neighbour_closed_at, dtype=np.float64)
    as_of = np.asarray(as_of, dtype=np.float64)
    if queries.ndim != 2 or pool.ndim != 2 or queries.shape[1] != pool.shape[1]:
        raise ValueError(f"vectors: shapes {queries.shape} and {pool.shape} do not match")
    if not (len(won) == len(closed_at) == len(pool)) or len(as_of) != len(queries):
        raise ValueError("neighbour_won, neighbour_closed_at and as_of must match the vectors' rows")
    if k < 1:
        raise ValueError("k: must be >= 1")
    out = np.full((len(queries), 2), np.nan)
    if len(pool) == 0 or len(queries) == 0:
        return out
    same_id = _codes(query_ids, neighbour_ids)
    same_workspace = _codes(query_workspaces, neighbour_workspaces)
    take = min(k, len(pool))
    for start in range(0, len(queries), _BLOCK):
        rows = slice(start, start + _BLOCK)
        scores = np.clip(queries[rows] @ pool.T, -1.0, 1.0).astype(np.float64)
        allowed = closed_at[None, :] < as_of[rows, None]
        if same_id is not None:
            allowed &= same_id[0][rows, None] != same_id[1][None, :]
        if same_workspace is not None:
            allowed &= same_workspace[0][rows, None] == same_workspace[1][None, :]
        scores[~allowed] = -np.inf
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        top_scores = np.take_along_axis(scores, top, axis=1)
        top_scores[np.isneginf(top_scores)] = np.nan
        out[rows] = _aggregate(top_scores, won[top])
    return out


def _codes(left: Sequence[str] | None, right: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Integer codes of two string sequences over one vocabulary (fast equality tests)."""
    if left is None and right is None:
        return None
    if left is None or right is None:
        raise ValueError("ids and workspaces must be given for both queries and neighbours, or neither")
    vocabulary: dict[str, int] = {}
    encode = [vocabulary.setdefault(value, len(vocabulary)) for value in (*left, *right)]
    return np.array(encode[: len(left)]), np.array(encode[len(left):])
