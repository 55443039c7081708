"""Which deals a model may learn from: the time split (the newest deals are held
out, whole deals on one side) and the leakage screen (a feature that alone
separates won from lost almost perfectly is a post-outcome column)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from vectoros.core.deals import DealRecord, Outcome
from vectoros.core.features import FeatureSpec


def time_split(records: Sequence[DealRecord], test_fraction: float) -> tuple[list[DealRecord], list[DealRecord]]:
    """(older, newer): whole deals by creation time (all snapshots of a deal on one side)."""
    created: dict[str, datetime] = {}
    for record in records:
        moment = record.created_at or record.snapshot_at
        assert moment is not None
        created[record.deal_id] = min(created.get(record.deal_id, moment), moment)
    deals = sorted(created, key=lambda d: (created[d], d))
    test_count = max(1, round(len(deals) * test_fraction))
    newer = set(deals[len(deals) - test_count:])
    return [r for r in records if r.deal_id not in newer], [r for r in records if r.deal_id in newer]


def labels_of(records: Sequence[DealRecord]) -> np.ndarray:
    """1 for a won deal, 0 for a lost one (int32, in the records' order)."""
    return np.array([r.outcome is Outcome.WON for r in records], dtype=np.int32)


def leakage_screen(
    features: np.ndarray, labels: np.ndarray, groups: Sequence[str], spec: FeatureSpec, seed: int
) -> dict[str, float]:
    """Each feature's out-of-fold ROC AUC alone (two folds by deal): values are binned
    (categories as they are, numbers in up to 20 quantile bins, missing as its own
    bin) and each bin scores its win rate in the other fold. A post-outcome column
    scores near 1."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    unique = sorted(set(groups))
    half = {g: bool(b) for g, b in zip(unique, rng.integers(0, 2, len(unique)), strict=True)}
    fold = np.array([half[g] for g in groups])
    base_rate = labels.mean()
    scores: dict[str, float] = {}
    for j, name in enumerate(spec.features):
        column = features[:, j].astype(np.float64)
        missing = np.isnan(column)
        if spec.is_categorical(name):
            bins = np.where(missing, -1, column).astype(np.int64)
        else:
            # Bin i holds edges[i-1] < x <= edges[i]: a point mass at the minimum
            # (a column that is 0 for every lost deal) gets a bin of its own.
            known = column[~missing]
            edges = np.unique(np.quantile(known, np.linspace(0, 1, 21))) if known.size else np.zeros(1)
            bins = np.searchsorted(edges, np.nan_to_num(column), side="left").astype(np.int64)
            bins[missing] = -1
        oof = np.empty(len(labels))
        for side in (False, True):
            fit, use = fold == side, fold != side
            rates = {b: labels[fit][bins[fit] == b].mean() for b in np.unique(bins[fit])}
            oof[use] = [rates.get(b, base_rate) for b in bins[use]]
        scores[name] = float(roc_auc_score(labels, oof)) if len(set(labels.tolist())) == 2 else 0.5
    return scores
