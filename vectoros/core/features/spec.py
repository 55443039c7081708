"""The feature spec: what the scorer's features are (builtin, custom attributes,
custom dates, similarity), their vocabularies and types, and its strict JSON
form in the scorer manifest. The rules of the features are in the package's
docstring (`vectoros.core.features`)."""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from vectoros.core.deals import ACTIVITY_TYPES
from vectoros.core.similar_features import SIMILARITY_FEATURES, SimilaritySpec

OTHER = "__other__"
ATTRIBUTE_PREFIX = "attr."
DATE_SUFFIX = ".days_ago"
DAY_SECONDS = 86400.0
ALL_STAGES = "__all__"
# The similarity features until `featurize` fills them from its `similar` argument.
NO_SIMILARITY = dict.fromkeys(SIMILARITY_FEATURES, math.nan)

ACTIVITY_FEATURES = tuple(f"activity_{kind}" for kind in ACTIVITY_TYPES)

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
    *ACTIVITY_FEATURES,
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
POSITIVE_CUES = re.compile(
    r"\b(champion|budget (?:approved|confirmed)|verbal(?:ly)? (?:yes|commit)|"
    r"signed off|exec(?:utive)? sponsor|expansion|references? (?:checked|done))\b"
)
NEGATIVE_CUES = re.compile(
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
