"""Held-out measures of a win/loss model: ranking (ROC AUC, PR AUC), decisions at
a threshold (accuracy, precision, recall, F1, the confusion matrix) and
probabilities (Brier score, log loss, expected calibration error)."""

from __future__ import annotations

import numpy as np


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Mean |predicted - observed| win rate over equal-width probability bins, weighted by bin size."""
    index = np.minimum((probabilities * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(probabilities[mask].mean() - labels[mask].mean())
    return float(total)


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Every measure above, by name (the names the manifest's metrics use)."""
    from sklearn import metrics

    predicted = (probabilities >= threshold).astype(int)
    tn, fp, fn, tp = metrics.confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    return {
        "roc_auc": float(metrics.roc_auc_score(labels, probabilities)),
        "pr_auc": float(metrics.average_precision_score(labels, probabilities)),
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "precision": float(metrics.precision_score(labels, predicted, zero_division=0)),
        "recall": float(metrics.recall_score(labels, predicted, zero_division=0)),
        "f1": float(metrics.f1_score(labels, predicted, zero_division=0)),
        "brier": float(metrics.brier_score_loss(labels, probabilities)),
        "log_loss": float(metrics.log_loss(labels, np.clip(probabilities, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "ece": expected_calibration_error(labels, probabilities),
        "confusion_tn": float(tn),
        "confusion_fp": float(fp),
        "confusion_fn": float(fn),
        "confusion_tp": float(tp),
    }
