"""The similarity features of the training matrix (`similar_win_rate`,
`similar_mean_score`, `vectoros.core.similar_features`), with `--embedder DIR`
(an embedder artifact or a published version folder).

Every record's `deal_to_text` is embedded, and each record's neighbours are the
other closed deals of its workspace that closed before its snapshot. A training
row's neighbours come from the training deals only (held-out outcomes never
shape the model); a held-out row may use any deal closed before its snapshot, as
the server's store would hold it. A deal with several snapshots is a neighbour
through its newest one (the store keeps a deal's last upsert).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from training.scorer.config import TrainingError
from vectoros.core.deals import DealRecord, Outcome
from vectoros.core.features import FeatureSpec
from vectoros.core.similar_features import (
    DEFAULT_K,
    SIMILARITY_FEATURES,
    SimilaritySpec,
    similarity_features,
)


def load_embedder_dir(directory: str | Path):
    """The embedder (`server.engines.embedding.EmbedderModel`) of an artifact folder
    or a published version folder, at its default precision."""
    from vectoros.core.embedder import load_embedder
    from vectoros.core.manifest import Manifest, ManifestError

    try:
        manifest = Manifest.load(Path(directory))
        if manifest.kind != "embedder":
            raise TrainingError(f"{directory}: a {manifest.kind!r} artifact, not an embedder")
        return load_embedder(Path(directory), manifest)
    except (OSError, ManifestError) as exc:
        raise TrainingError(f"{directory}: not a usable embedder artifact ({exc})") from None


def embed_records(embedder, records: Sequence[DealRecord], batch_size: int = 256, progress=None) -> np.ndarray:
    """Unit vectors (float32 [len(records), dimension]) of the records' `deal_to_text`,
    each distinct text embedded once."""
    from vectoros.core.deal_text import deal_to_text

    texts = [deal_to_text(r) for r in records]
    distinct = list(dict.fromkeys(texts))
    vectors = np.empty((len(distinct), embedder.dimension), dtype=np.float32)
    for start in range(0, len(distinct), batch_size):
        vectors[start : start + batch_size] = embedder.embed(distinct[start : start + batch_size]).vectors
        if progress is not None:
            progress(min(start + batch_size, len(distinct)), len(distinct))
    row = {text: i for i, text in enumerate(distinct)}
    return vectors[[row[t] for t in texts]]


def similarity_columns(
    train_records: Sequence[DealRecord],
    test_records: Sequence[DealRecord],
    embedder,
    k: int = DEFAULT_K,
    progress=None,
) -> tuple[SimilaritySpec, np.ndarray, np.ndarray]:
    """The similarity spec and the two similarity features of the training and
    held-out rows ([n, 2] each; see the module docstring for who may be a
    neighbour of whom)."""
    from vectoros.core.deal_text import TEMPLATE_VERSION

    records = [*train_records, *test_records]
    vectors = embed_records(embedder, records, progress=progress)
    # Neighbours: each closed deal once, through its newest snapshot.
    newest: dict[str, int] = {}
    for i, record in enumerate(records):
        j = newest.get(record.deal_id)
        if j is None or (record.snapshot_at, i) > (records[j].snapshot_at, j):
            newest[record.deal_id] = i
    pool = sorted(newest.values())
    # A closed deal without a close date cannot be placed in time: never a neighbour.
    closed_at = np.array([r.closed_at.timestamp() if r.closed_at else math.inf for r in (records[j] for j in pool)])
    won = np.array([records[j].outcome is Outcome.WON for j in pool])
    ids = [records[j].deal_id for j in pool]
    workspaces = [records[j].workspace_id for j in pool]
    train_ids = {r.deal_id for r in train_records}
    in_train = np.array([deal_id in train_ids for deal_id in ids])

    def columns(rows: range, allowed: np.ndarray) -> np.ndarray:
        chosen = [pool[j] for j in np.flatnonzero(allowed)]
        return similarity_features(
            vectors[list(rows)],
            vectors[chosen],
            won[allowed],
            closed_at[allowed],
            np.array([records[i].snapshot_at.timestamp() for i in rows]),
            k,
            query_ids=[records[i].deal_id for i in rows],
            neighbour_ids=[ids[j] for j in np.flatnonzero(allowed)],
            query_workspaces=[records[i].workspace_id for i in rows],
            neighbour_workspaces=[workspaces[j] for j in np.flatnonzero(allowed)],
        )

    train = columns(range(len(train_records)), in_train)
    test = columns(range(len(train_records), len(records)), np.ones(len(pool), dtype=bool))
    spec = SimilaritySpec(
        k=k,
        template_version=TEMPLATE_VERSION,
        embedder_name=embedder.name,
        embedder_version=embedder.version,
        embedder_fingerprint=embedder.fingerprint,
    )
    return spec, train, test


def with_similarity(spec: FeatureSpec, similarity: SimilaritySpec | None, excluded: Sequence[str] = ()) -> FeatureSpec:
    """`spec` with the similarity features appended (those not in `excluded`)."""
    if similarity is None:
        return spec
    kept = tuple(name for name in SIMILARITY_FEATURES if name not in excluded)
    if not kept:
        return spec
    return replace(spec, features=spec.features + kept, similarity=similarity)

