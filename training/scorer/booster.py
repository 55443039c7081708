"""The XGBoost classifier every fit uses (the fixed settings beside the searched
ones) and its raw margins."""

from __future__ import annotations

import numpy as np

from training.scorer.config import TrainConfig


def classifier(params: dict, trees: int, positive_weight: float, config: TrainConfig, early: bool):
    """An unfitted classifier with up to `trees` trees and the grid's `params`;
    `early` stops on the evaluation set after `config.early_stopping_rounds`."""
    import xgboost

    return xgboost.XGBClassifier(
        n_estimators=trees,
        objective="binary:logistic",
        tree_method="hist",
        subsample=0.8,
        colsample_bytree=0.8,
        reg_lambda=1.0,
        scale_pos_weight=positive_weight,
        eval_metric="logloss",
        early_stopping_rounds=config.early_stopping_rounds if early else None,
        random_state=config.seed,
        n_jobs=config.jobs,
        **params,
    )


def raw_margins(model, features: np.ndarray, trees: int | None = None) -> np.ndarray:
    """The log-odds of each row (float64), from the first `trees` trees (all by default)."""
    import xgboost

    booster = model.get_booster()
    matrix = xgboost.DMatrix(features, missing=np.nan)
    return booster.predict(matrix, output_margin=True, iteration_range=(0, trees or 0)).astype(np.float64)

