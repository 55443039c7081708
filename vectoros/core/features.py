"""Deal features for the win/loss scorer: one code path for training and serving.

`fit_feature_spec(records)` learns what the features are from training records
(category vocabularies, the usual order of stages, typical deal sizes, which
custom attributes exist); `featurize(records, spec)` turns records into the
float32 matrix the model reads. The training package and the Scoring engine
both call `featurize`, so a deal is described the same way in both places.

Every feature is computed as of the record's `snapshot_at` (for a live request,
the request time), and nothing known only later is used:

- `outcome`, `closed_at` and anything derived from them (time to close, the
  final stage) are never features.
- Stage history entries, `stage_entered_at`, `last_activity_at` and custom date
  attributes dated after the snapshot are ignored (treated as missing): the
  event had not happened yet when the snapshot was taken.
- Terminal stage names ("closed won", "Closed-Lost", "won", "lost", ...) are
  the outcome in disguise and count as a missing stage.

Fields that carry no date (activity counts, probability, notes, custom numbers
and categories) are taken to describe the deal as of the snapshot; the input
format documents that (docs/deal-records.md), since no code can tell a
post-outcome number from an honest one. The training package also screens each
feature for suspicious single-feature separation.

Encoding: numbers are float32 as they are, missing values are NaN (the trees
route NaN down a learned branch). A categorical feature is the position of its
value in the spec's vocabulary (most frequent first); values seen too rarely in
training, or never, map to the last code, `OTHER`; an empty value is NaN. One
column per original feature keeps tree-path contributions per feature.

Similarity features (`similar_win_rate`, `similar_mean_score`,
`vectoros.core.similar_features`) are in a spec only when it has a
`similarity` section (a scorer trained with an embedder). They come from the
deal's neighbours in a vector space, not from the record, so `featurize` takes
them as an argument and leaves them NaN without it.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from vectoros.core.deals import ACTIVITY_TYPES, DealRecord
from vectoros.core.similar_features import SIMILARITY_FEATURES, SimilaritySpec

OTHER = "__other__"
ATTRIBUTE_PREFIX = "attr."
DATE_SUFFIX = ".days_ago"
_DAY = 86400.0
_ALL = "__all__"
# The similarity features until `featurize` fills them from its `similar` argument.
_NO_SIMILARITY = dict.fromkeys(SIMILARITY_FEATURES, math.nan)

_ACTIVITY_FEATURES = tuple(f"activity_{kind}" for kind in ACTIVITY_TYPES)
_MEETINGS, _DEMOS = ACTIVITY_TYPES.index("meetings"), ACTIVITY_TYPES.index("demos")

# Categorical built-in features and the record field each reads.
BUILTIN_CATEGORICAL = ("stage", "industry", "region", "owner_id", "currency")

# Built-in features in matrix order (custom attributes follow, sorted by name).
BUILTIN_FEATURES = (
    # temporal
    "days_since_created",
    "days_in_stage",
    "days_to_expected_close",
    "planned_cycle_days",
    "days_since_last_activity",
    "days_to_quarter_end",
    # value
    "value",
    "value_vs_industry_median",
    # stage
    "stage",
    "stage_rank",
    "stages_visited",
    "stage_changes",
    "stage_regressions",
    "days_per_stage",
    # probability
    "probability",
    # activity
    *_ACTIVITY_FEATURES,
    "activities_total",
    "activities_per_week",
    "meeting_demo_share",
    # people and account
    "contact_count",
    "competitor_present",
    "owner_id",
    "industry",
    "region",
    "currency",
    # notes
    "notes_words",
    "notes_positive_cues",
    "notes_negative_cues",
)

_TERMINAL_STAGE = re.compile(r"\b(closed|won|lost)\b")
# Sales cues in the rep's notes. Deliberately few and generic: the notes are
# free text, and a richer text signal belongs to the embedder.
_POSITIVE_CUES = re.compile(
    r"\b(champion|budget (?:approved|confirmed)|verbal(?:ly)? (?:yes|commit)|"
    r"signed off|exec(?:utive)? sponsor|expansion|references? (?:checked|done))\b"
)
_NEGATIVE_CUES = re.compile(
    r"\b(no budget|pricing concerns?|too expensive|went dark|no response|on hold|"
    r"delay(?:ed)?|competitor|reorg|freeze|pushed (?:out|back))\b"
)

_SPEC_KEYS = (
    "features",
    "categories",
    "custom_numeric",
    "custom_categorical",
    "custom_dates",
    "stage_order",
    "value_medians",
    "excluded",
)
_OPTIONAL_SPEC_KEYS = ("similarity",)


@functools.lru_cache(maxsize=4096)
def is_terminal_stage(stage: str) -> bool:
    """Whether a stage name states the outcome ("Closed Won", "closed_lost", "won")."""
    return bool(_TERMINAL_STAGE.search(stage.lower().replace("_", " ").replace("-", " ")))


def attribute_feature(name: str) -> str:
    """The feature name of a custom numeric or categorical attribute."""
    return f"{ATTRIBUTE_PREFIX}{name}"


def date_feature(name: str) -> str:
    """The feature name of a custom date attribute: days from the date to the snapshot."""
    return f"{ATTRIBUTE_PREFIX}{name}{DATE_SUFFIX}"


@dataclass(frozen=True)
class SpecOverrides:
    """What a feature-spec file may say, over the automatic choices.

    `numeric`, `categorical`, `date`: custom column names forced to that type
    (the reader uses these; dates are stored as Unix seconds in the record's
    numeric attributes). `exclude`: feature names or custom column names that
    must never be features (for example a column known to be filled after the
    outcome). `min_category_count` / `max_categories`: vocabulary limits.
    """

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    date: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    min_category_count: int = 3
    max_categories: int = 50

    @classmethod
    def from_dict(cls, data: object) -> SpecOverrides:
        """Validate a decoded feature-spec file (unknown keys are an error)."""
        if not isinstance(data, dict):
            raise ValueError("feature spec: must be a JSON object")
        known = ("numeric", "categorical", "date", "exclude", "min_category_count", "max_categories")
        for key in data:
            if key not in known:
                raise ValueError(f"feature spec: unknown key {key!r} (known: {', '.join(known)})")
        values: dict[str, object] = {}
        for key in ("numeric", "categorical", "date", "exclude"):
            names = data.get(key, [])
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise ValueError(f"feature spec: {key} must be a list of names")
            values[key] = tuple(names)
        for key in ("min_category_count", "max_categories"):
            if key in data:
                if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 1:
                    raise ValueError(f"feature spec: {key} must be an integer >= 1")
                values[key] = data[key]
        typed = [n for key in ("numeric", "categorical", "date") for n in values[key]]  # type: ignore[union-attr]
        clash = sorted({n for n in typed if typed.count(n) > 1})
        if clash:
            raise ValueError(f"feature spec: {', '.join(clash)} given more than one type")
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FeatureSpec:
    """The scorer's features, fitted on training records and stored in the manifest.

    `features` is the column order of the matrix. `categories` maps each
    categorical feature to its vocabulary (a value's code is its position; the
    last entry is `OTHER`). `custom_numeric`, `custom_categorical` and
    `custom_dates` name the custom attributes used. `stage_order` gives each
    stage its usual position in a deal's path; `value_medians` the median deal
    value per industry (`"__all__"` overall). `excluded` records features left
    out and why (reported, never read). `similarity` (optional) says how the
    similarity features were made; without it the spec has none.
    """

    features: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]]
    custom_numeric: tuple[str, ...] = ()
    custom_categorical: tuple[str, ...] = ()
    custom_dates: tuple[str, ...] = ()
    stage_order: Mapping[str, float] = field(default_factory=dict)
    value_medians: Mapping[str, float] = field(default_factory=dict)
    excluded: Mapping[str, str] = field(default_factory=dict)
    similarity: SimilaritySpec | None = None

    def __post_init__(self) -> None:
        known = set(BUILTIN_FEATURES)
        if self.similarity is not None:
            known.update(SIMILARITY_FEATURES)
        known.update(attribute_feature(n) for n in self.custom_numeric + self.custom_categorical)
        known.update(date_feature(n) for n in self.custom_dates)
        if len(set(self.features)) != len(self.features):
            raise ValueError("features: duplicate names")
        for name in self.features:
            if name not in known:
                raise ValueError(f"features: unknown feature {name!r}")
        categorical = set(BUILTIN_CATEGORICAL) | {attribute_feature(n) for n in self.custom_categorical}
        for name in self.features:
            if name in categorical:
                vocabulary = self.categories.get(name)
                if not vocabulary or vocabulary[-1] != OTHER or OTHER in vocabulary[:-1]:
                    raise ValueError(f"categories.{name}: needs a vocabulary ending with {OTHER!r}")
        for name in self.categories:
            if name not in self.features or name not in categorical:
                raise ValueError(f"categories.{name}: not a categorical feature of this spec")
        for name, value in (*self.stage_order.items(), *self.value_medians.items()):
            if not math.isfinite(value):
                raise ValueError(f"{name}: must be finite")

    @property
    def width(self) -> int:
        return len(self.features)

    @functools.cached_property
    def similarity_columns(self) -> tuple[tuple[int, int], ...]:
        """(matrix column, similarity feature index) of each similarity feature kept."""
        return tuple(
            (self.features.index(name), index)
            for index, name in enumerate(SIMILARITY_FEATURES) if name in self.features
        )

    @functools.cached_property
    def custom_feature_names(self) -> tuple[tuple[tuple[str, str], ...], ...]:
        """(attribute, feature name) pairs: numeric, categorical, dates (built once per spec)."""
        return (
            tuple((n, attribute_feature(n)) for n in self.custom_numeric),
            tuple((n, attribute_feature(n)) for n in self.custom_categorical),
            tuple((n, date_feature(n)) for n in self.custom_dates),
        )

    @functools.cached_property
    def codes(self) -> dict[str, dict[str, float]]:
        """Category -> code per categorical feature (built once per spec)."""
        return {name: {v: float(i) for i, v in enumerate(vocab)} for name, vocab in self.categories.items()}

    @functools.cached_property
    def row_layout(self) -> tuple[tuple[tuple[str, dict[str, float], float], ...], Callable[[dict], tuple]]:
        """How `featurize` turns a raw row into a matrix row (built once per spec):
        (feature, category -> code, OTHER's code) per categorical feature, and a
        function picking the row's values in `features` order (an itemgetter:
        one C call instead of a lookup per column)."""
        encoders = tuple((name, lookup, lookup[OTHER]) for name, lookup in self.codes.items())
        if self.width == 1:
            (only,) = self.features
            return encoders, lambda row: (row[only],)
        return encoders, operator.itemgetter(*self.features)

    def is_categorical(self, feature: str) -> bool:
        return feature in self.categories

    def value_text(self, feature: str, value: float) -> str:
        """A feature value as a person reads it: the category, a number, or "missing"."""
        if math.isnan(value):
            return "missing"
        vocabulary = self.categories.get(feature)
        if vocabulary is not None:
            return "other" if vocabulary[int(value)] == OTHER else vocabulary[int(value)]
        if feature == "competitor_present":
            return "yes" if value else "no"
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.4g}"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (the manifest's `spec.features`)."""
        return {
            "features": list(self.features),
            "categories": {name: list(v) for name, v in self.categories.items()},
            "custom_numeric": list(self.custom_numeric),
            "custom_categorical": list(self.custom_categorical),
            "custom_dates": list(self.custom_dates),
            "stage_order": dict(self.stage_order),
            "value_medians": dict(self.value_medians),
            "excluded": dict(self.excluded),
            # Absent, not null, without similarity: older scorers' specs stay as they were.
            **({"similarity": self.similarity.to_dict()} if self.similarity is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: object) -> FeatureSpec:
        """Validate and build a spec from `to_dict()` output. Any unknown, missing or
        ill-typed key raises ValueError naming it."""
        if not isinstance(data, dict):
            raise ValueError("must be an object")
        for key in data:
            if key not in _SPEC_KEYS and key not in _OPTIONAL_SPEC_KEYS:
                raise ValueError(f"{key}: unknown key")
        for key in _SPEC_KEYS:
            if key not in data:
                raise ValueError(f"{key}: missing key")

        def names(key: str) -> tuple[str, ...]:
            value = data[key]
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"{key}: must be a list of non-empty strings")
            return tuple(value)

        def mapping(key: str, check) -> dict:
            value = data[key]
            if not isinstance(value, dict) or not all(check(v) for v in value.values()):
                raise ValueError(f"{key}: must be an object of the right value type")
            return value

        def is_number(v: object) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        categories = mapping("categories", lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v))
        return cls(
            features=names("features"),
            categories={name: tuple(v) for name, v in categories.items()},
            custom_numeric=names("custom_numeric"),
            custom_categorical=names("custom_categorical"),
            custom_dates=names("custom_dates"),
            stage_order={k: float(v) for k, v in mapping("stage_order", is_number).items()},
            value_medians={k: float(v) for k, v in mapping("value_medians", is_number).items()},
            excluded=dict(mapping("excluded", lambda v: isinstance(v, str))),
            similarity=SimilaritySpec.from_dict(data["similarity"]) if "similarity" in data else None,
        )


# --- computing features ------------------------------------------------------------


def _days(later: datetime | None, earlier: datetime | None) -> float:
    if later is None or earlier is None:
        return math.nan
    return (later - earlier).total_seconds() / _DAY


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


def _stage_path(record: DealRecord, as_of: datetime) -> tuple[list[str], str, datetime | None]:
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
    path, stage, stage_entered = _stage_path(record, as_of)
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
    median = spec.value_medians.get(record.industry) or spec.value_medians.get(_ALL)
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
        "notes_positive_cues": float(len(_POSITIVE_CUES.findall(notes))),
        "notes_negative_cues": float(len(_NEGATIVE_CUES.findall(notes))),
    }
    for feature, count in zip(_ACTIVITY_FEATURES, activity, strict=True):
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
        days = math.nan if stamp is None else (as_of.timestamp() - stamp) / _DAY
        # A date after the snapshot had not happened yet: unknown, never a hint.
        row[feature] = days if days >= 0 else math.nan
    return row


def _as_of(record: DealRecord, now: datetime | None) -> datetime:
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
        row = _raw_row(record, spec, _as_of(record, now))
        for name, lookup, other in encoders:
            value = row[name]
            row[name] = math.nan if value == "" else lookup.get(value, other)
        row.update(_NO_SIMILARITY)
        matrix[i] = in_spec_order(row)
    if similar is not None:
        similar = np.asarray(similar)
        if similar.shape != (len(records), len(SIMILARITY_FEATURES)):
            raise ValueError(f"similar: shape {similar.shape}, expected ({len(records)}, {len(SIMILARITY_FEATURES)})")
        for column, index in spec.similarity_columns:
            matrix[:, column] = similar[:, index]
    return matrix


# --- fitting -----------------------------------------------------------------------


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
        path, _, _ = _stage_path(record, _as_of(record, None))
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
        medians[_ALL] = float(np.median([r.value for r in records]))

    vocabularies = {
        "stage": _vocabulary((_stage_path(r, _as_of(r, None))[1] for r in records), overrides),
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
