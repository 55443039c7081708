"""Deal features for the win/loss scorer: one code path for training and serving.
`spec` (FeatureSpec, SpecOverrides), `featurize` (records -> matrix), `fit` (fit_feature_spec).

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

from vectoros.core.features.featurize import featurize
from vectoros.core.features.fit import fit_feature_spec
from vectoros.core.features.spec import (
    ATTRIBUTE_PREFIX,
    BUILTIN_CATEGORICAL,
    BUILTIN_FEATURES,
    DATE_SUFFIX,
    OTHER,
    FeatureSpec,
    SpecOverrides,
    attribute_feature,
    date_feature,
    is_terminal_stage,
)

__all__ = [
    "ATTRIBUTE_PREFIX",
    "BUILTIN_CATEGORICAL",
    "BUILTIN_FEATURES",
    "DATE_SUFFIX",
    "OTHER",
    "FeatureSpec",
    "SpecOverrides",
    "attribute_feature",
    "date_feature",
    "featurize",
    "fit_feature_spec",
    "is_terminal_stage",
]
