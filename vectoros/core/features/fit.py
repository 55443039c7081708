"""Fitting the feature spec on training records (vocabularies, stage order,
typical sizes, which custom attributes exist)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from vectoros.core.deals import DealRecord
from vectoros.core.features.featurize import as_of_time, featurize, stage_path
from vectoros.core.features.spec import (
    ALL_STAGES,
    BUILTIN_FEATURES,
    OTHER,
    FeatureSpec,
    SpecOverrides,
    attribute_feature,
    date_feature,
)


def _vocabulary(values: Iterable[str], overrides: SpecOverrides) -> tuple[str, ...]:
    counts = Counter(v for v in values if v)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = [v for v, c in ranked if c >= overrides.min_category_count and v != OTHER]
    return (*kept[: overrides.max_categories], OTHER)


def _stage_order(records: Sequence[DealRecord]) -> dict[str, float]:
    """Each stage's mean position (first entry) in the training stage paths: a rank
    that is learned, so any CRM's stage names work."""
    positions: dict[str, list[int]] = {}
    for record in records:
        path, _, _ = stage_path(record, as_of_time(record, None))
        first: dict[str, int] = {}
        for stage in path:
            first.setdefault(stage, len(first))
        for stage, position in first.items():
            positions.setdefault(stage, []).append(position)
    return {stage: round(float(np.mean(p)), 6) for stage, p in sorted(positions.items())}


def fit_feature_spec(
    records: Sequence[DealRecord],
    overrides: SpecOverrides | None = None,
    *,
    custom_numeric: Iterable[str] = (),
    custom_categorical: Iterable[str] = (),
    custom_dates: Iterable[str] = (),
) -> FeatureSpec:
    """Learn the feature spec from training records (each with a `snapshot_at`).

    Custom attributes default to every key found in the records' numeric and
    categorical attributes; date attributes must be named (`custom_dates` or the
    overrides), since they arrive as numbers (Unix seconds). Features in
    `overrides.exclude`, features with no value in any record and features with
    one constant value are left out and listed in `excluded`.
    """
    overrides = overrides or SpecOverrides()
    dates = sorted(set(custom_dates) | set(overrides.date))
    numeric_names = set(custom_numeric) | set(overrides.numeric)
    categorical_names = set(custom_categorical) | set(overrides.categorical)
    for record in records:
        numeric_names.update(record.numeric_attributes)
        categorical_names.update(record.categorical_attributes)
    numeric_names -= set(dates) | set(overrides.categorical)
    categorical_names -= set(dates) | set(overrides.numeric)
    both = numeric_names & categorical_names
    if both:
        raise ValueError(f"custom attributes {', '.join(sorted(both))} are both numeric and categorical")

    excluded: dict[str, str] = {}
    exclude = set(overrides.exclude)

    def keep(attribute: str, feature: str) -> bool:
        if attribute in exclude or feature in exclude:
            excluded[feature] = "excluded by the feature spec"
            return False
        return True

    numeric_kept = tuple(n for n in sorted(numeric_names) if keep(n, attribute_feature(n)))
    categorical_kept = tuple(n for n in sorted(categorical_names) if keep(n, attribute_feature(n)))
    dates_kept = tuple(n for n in dates if keep(n, date_feature(n)))

    industry_values: dict[str, list[float]] = {}
    for record in records:
        industry_values.setdefault(record.industry, []).append(record.value)
    medians = {industry: float(np.median(v)) for industry, v in industry_values.items() if industry and len(v) >= 5}
    if records:
        medians[ALL_STAGES] = float(np.median([r.value for r in records]))

    vocabularies = {
        "stage": _vocabulary((stage_path(r, as_of_time(r, None))[1] for r in records), overrides),
        "industry": _vocabulary((r.industry for r in records), overrides),
        "region": _vocabulary((r.region for r in records), overrides),
        "owner_id": _vocabulary((r.owner_id for r in records), overrides),
        "currency": _vocabulary((r.currency for r in records), overrides),
    }
    for name in categorical_kept:
        vocabularies[attribute_feature(name)] = _vocabulary(
            (r.categorical_attributes.get(name, "") for r in records), overrides
        )

    candidates = [f for f in BUILTIN_FEATURES if keep(f, f)]
    candidates += [attribute_feature(n) for n in numeric_kept + categorical_kept]
    candidates += [date_feature(n) for n in dates_kept]
    draft = FeatureSpec(
        features=tuple(candidates),
        categories={f: vocabularies[f] for f in candidates if f in vocabularies},
        custom_numeric=numeric_kept,
        custom_categorical=categorical_kept,
        custom_dates=dates_kept,
        stage_order=_stage_order(records),
        value_medians=medians,
    )
    matrix = featurize(records, draft)
    final = []
    for j, name in enumerate(draft.features):
        column = matrix[:, j]
        known = column[~np.isnan(column)]
        if known.size == 0:
            excluded[name] = "no value in the training data"
        elif np.all(known == known[0]) and known.size == column.size:
            excluded[name] = "constant in the training data"
        else:
            final.append(name)
    return FeatureSpec(
        features=tuple(final),
        categories={f: v for f, v in draft.categories.items() if f in final},
        custom_numeric=tuple(n for n in numeric_kept if attribute_feature(n) in final),
        custom_categorical=tuple(n for n in categorical_kept if attribute_feature(n) in final),
        custom_dates=tuple(n for n in dates_kept if date_feature(n) in final),
        stage_order=draft.stage_order,
        value_medians=medians,
        excluded=dict(sorted(excluded.items())),
    )
