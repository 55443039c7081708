"""Computing features: records -> the float32 matrix the model reads, as of each
record's snapshot (see `vectoros.core.features` for the rules)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from vectoros.core.deals import ACTIVITY_TYPES, DealRecord
from vectoros.core.features.spec import (
    ACTIVITY_FEATURES,
    ALL_STAGES,
    DAY_SECONDS,
    NEGATIVE_CUES,
    NO_SIMILARITY,
    POSITIVE_CUES,
    FeatureSpec,
    is_terminal_stage,
)
from vectoros.core.similar_features import SIMILARITY_FEATURES

_MEETINGS, _DEMOS = ACTIVITY_TYPES.index("meetings"), ACTIVITY_TYPES.index("demos")


def _days(later: datetime | None, earlier: datetime | None) -> float:
    if later is None or earlier is None:
        return math.nan
    return (later - earlier).total_seconds() / DAY_SECONDS


def _days_to_quarter_end(as_of: datetime) -> float:
    return _days(_next_quarter_start(as_of.year, as_of.month), as_of)


@functools.lru_cache(maxsize=64)
def _next_quarter_start(year: int, month: int) -> datetime:
    """The first moment of the quarter after (year, month). Cached: every row needs
    one, and building an aware datetime costs more than the lookup."""
    quarter_end_month = (month - 1) // 3 * 3 + 3
    if quarter_end_month == 12:
        return datetime(year + 1, 1, 1, tzinfo=UTC)
    return datetime(year, quarter_end_month + 1, 1, tzinfo=UTC)


def stage_path(record: DealRecord, as_of: datetime) -> tuple[list[str], str, datetime | None]:
    """Stages entered up to `as_of` (oldest first), the stage at `as_of`, and when it
    was entered. Terminal stages are dropped: they are the outcome."""
    stages = [
        (change.stage, change.entered_at) for change in record.stage_history
        if change.entered_at <= as_of and change.stage and not is_terminal_stage(change.stage)
    ]
    current, entered = record.stage, record.stage_entered_at
    if current and not is_terminal_stage(current):
        if entered is not None:
            # A dated current stage counts only if it was entered by the snapshot
            # and is not older than the history's last entry.
            if entered <= as_of and (not stages or (entered >= stages[-1][1] and current != stages[-1][0])):
                stages.append((current, entered))
        elif not record.stage_history:
            # No dates at all: the record's stage is taken as of the snapshot
            # (docs/deal-records.md). With a history, the history decides.
            return [current], current, None
    if not stages:
        return [], "", None
    return [s for s, _ in stages], stages[-1][0], stages[-1][1]


def _raw_row(record: DealRecord, spec: FeatureSpec, as_of: datetime) -> dict[str, float | str]:
    """Every candidate feature of one record: numbers as floats (NaN if missing),
    categoricals as their raw text ("" if missing)."""
    path, stage, stage_entered = stage_path(record, as_of)
    created = record.created_at if record.created_at is not None and record.created_at <= as_of else None
    last_activity = record.last_activity_at
    if last_activity is not None and last_activity > as_of:
        last_activity = None
    age = _days(as_of, created)

    order = spec.stage_order
    ranks = [order[s] for s in path if s in order]
    visited = len(set(path))
    counts = record.activity_counts
    activity = [float(counts[kind]) if kind in counts else math.nan for kind in ACTIVITY_TYPES]
    known = [v for v in activity if not math.isnan(v)]
    total = sum(known) if known else math.nan
    meetings, demos = activity[_MEETINGS], activity[_DEMOS]
    median = spec.value_medians.get(record.industry) or spec.value_medians.get(ALL_STAGES)
    notes = record.notes.lower()

    row: dict[str, float | str] = {
        "days_since_created": age,
        "days_in_stage": _days(as_of, stage_entered),
        "days_to_expected_close": _days(record.expected_close_at, as_of),
        "planned_cycle_days": _days(record.expected_close_at, created),
        "days_since_last_activity": _days(as_of, last_activity),
        "days_to_quarter_end": _days_to_quarter_end(as_of),
        "value": record.value,
        "value_vs_industry_median": record.value / median if median else math.nan,
        "stage": stage,
        "stage_rank": order.get(stage, math.nan),
        "stages_visited": float(visited) if path else math.nan,
        "stage_changes": float(len(path)) if path else math.nan,
        "stage_regressions": float(sum(b < a for a, b in zip(ranks, ranks[1:], strict=False))) if path else math.nan,
        "days_per_stage": age / visited if visited else math.nan,
        "probability": math.nan if record.probability is None else record.probability,
        "activities_total": total,
        "activities_per_week": total / max(age, 1.0) * 7.0 if not math.isnan(age) else math.nan,
        "meeting_demo_share": (meetings + demos) / total if total and total > 0 else math.nan,
        "contact_count": float(record.contact_count),
        "competitor_present": math.nan if record.competitor_present is None else float(record.competitor_present),
        "owner_id": record.owner_id,
        "industry": record.industry,
        "region": record.region,
        "currency": record.currency,
        "notes_words": float(len(notes.split())),
        "notes_positive_cues": float(len(POSITIVE_CUES.findall(notes))),
        "notes_negative_cues": float(len(NEGATIVE_CUES.findall(notes))),
    }
    for feature, count in zip(ACTIVITY_FEATURES, activity, strict=True):
        row[feature] = count
    numeric = record.numeric_attributes
    numeric_names, categorical_names, date_names = spec.custom_feature_names
    for name, feature in numeric_names:
        value = numeric.get(name)
        row[feature] = math.nan if value is None else float(value)
    for name, feature in categorical_names:
        row[feature] = record.categorical_attributes.get(name, "")
    for name, feature in date_names:
        stamp = numeric.get(name)
        days = math.nan if stamp is None else (as_of.timestamp() - stamp) / DAY_SECONDS
        # A date after the snapshot had not happened yet: unknown, never a hint.
        row[feature] = days if days >= 0 else math.nan
    return row


def as_of_time(record: DealRecord, now: datetime | None) -> datetime:
    as_of = record.snapshot_at or now
    if as_of is None:
        raise ValueError(f"deal {record.deal_id!r}: no snapshot_at and no `now` to score it as of")
    return as_of


def featurize(
    records: Sequence[DealRecord],
    spec: FeatureSpec,
    now: datetime | None = None,
    similar: np.ndarray | None = None,
) -> np.ndarray:
    """The float32 feature matrix [len(records), spec.width] in `spec.features` order.

    Each record is described as of its `snapshot_at`, or `now` when it has none.
    Missing values are NaN; categories are vocabulary codes (unknown -> OTHER).
    `similar` [len(records), 2] holds the similarity features
    (`vectoros.core.similar_features`) of a spec that has them; without it they
    are NaN.
    """
    encoders, in_spec_order = spec.row_layout
    matrix = np.empty((len(records), spec.width), dtype=np.float32)
    for i, record in enumerate(records):
        row = _raw_row(record, spec, as_of_time(record, now))
        for name, lookup, other in encoders:
            value = row[name]
            row[name] = math.nan if value == "" else lookup.get(value, other)
        row.update(NO_SIMILARITY)
        matrix[i] = in_spec_order(row)
    if similar is not None:
        similar = np.asarray(similar)
        if similar.shape != (len(records), len(SIMILARITY_FEATURES)):
            raise ValueError(f"similar: shape {similar.shape}, expected ({len(records)}, {len(SIMILARITY_FEATURES)})")
        for column, index in spec.similarity_columns:
            matrix[:, column] = similar[:, index]
    return matrix
