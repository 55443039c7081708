"""The baseline the scorer is measured beside: a logistic regression on the same
feature matrix."""

from __future__ import annotations

import numpy as np

from vectoros.core.features import FeatureSpec


def logistic_baseline(train_x, train_y, test_x, spec: FeatureSpec, seed: int) -> np.ndarray:
    """Held-out probabilities of a logistic regression on the same features: numbers
    imputed (median, with missing indicators) and scaled, categories one-hot."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categorical = [j for j, name in enumerate(spec.features) if spec.is_categorical(name)]
    numeric = [j for j in range(spec.width) if j not in categorical]
    columns = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True,
                                                    keep_empty_features=True), StandardScaler()), numeric),
            ("categorical", make_pipeline(SimpleImputer(strategy="constant", fill_value=-1.0),
                                          OneHotEncoder(handle_unknown="ignore")), categorical),
        ]
    )
    pipeline = make_pipeline(columns, LogisticRegression(C=1.0, max_iter=3000, random_state=seed))
    pipeline.fit(train_x.astype(np.float64), train_y)
    return pipeline.predict_proba(test_x.astype(np.float64))[:, 1]

