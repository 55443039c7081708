"""Choosing the boosting settings and calibrating the margins: a grid search by
grouped, stratified k-fold cross-validation with early stopping, whose best
setting's out-of-fold margins fit the Platt calibration (a slope and an
intercept on the margin, applied by the server)."""

from __future__ import annotations

import statistics
from typing import NamedTuple

import numpy as np

from training.scorer.booster import classifier, raw_margins
from training.scorer.config import TrainConfig


class GridResult(NamedTuple):
    """One setting of the grid across the folds."""

    params: dict
    auc: float  # mean ROC AUC of the held-out folds
    trees: int  # median of the folds' early-stopped tree counts
    oof_margins: np.ndarray  # each training row's margin from the fold that held it out
    auc_std: float


def cross_validate(features, labels, groups, config: TrainConfig, positive_weight: float, progress) -> list[GridResult]:
    """Grid search by grouped, stratified k-fold with early stopping. Returns each
    setting's result, best (highest mean AUC) first. `progress.update(1)` after each fold."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    splits = list(splitter.split(features, labels, groups))
    results = []
    for params in config.grid:
        oof = np.zeros(len(labels))
        aucs, trees = [], []
        for fit, held in splits:
            model = classifier(params, config.max_trees, positive_weight, config, early=True)
            model.fit(features[fit], labels[fit], eval_set=[(features[held], labels[held])], verbose=False)
            best = int(model.best_iteration) + 1
            oof[held] = raw_margins(model, features[held], best)
            aucs.append(roc_auc_score(labels[held], oof[held]))
            trees.append(best)
            progress.update(1)
        results.append(GridResult(params, float(np.mean(aucs)), int(statistics.median(trees)), oof,
                                  float(np.std(aucs))))
    results.sort(key=lambda r: -r[1])
    return results


def fit_platt(margins: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of P(won) = sigmoid(slope * margin + intercept), nearly unregularized."""
    from sklearn.linear_model import LogisticRegression

    platt = LogisticRegression(C=1e4, max_iter=1000).fit(margins.reshape(-1, 1), labels)
    return float(platt.coef_[0, 0]), float(platt.intercept_[0])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
