"""What one scorer training run is told (`TrainConfig`, the hyperparameter grids)
and how it fails (`TrainingError`)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_GRID = tuple(
    {"max_depth": depth, "learning_rate": rate, "min_child_weight": weight}
    for depth in (3, 5)
    for rate in (0.05, 0.1)
    for weight in (1, 5)
)
SMALL_GRID = ({"max_depth": 3, "learning_rate": 0.1, "min_child_weight": 1},
              {"max_depth": 5, "learning_rate": 0.1, "min_child_weight": 5})


class TrainingError(RuntimeError):
    """Training cannot produce a trustworthy model from this data."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run. `leakage_auc` >= 1 turns the screen off;
    `allow_perfect` accepts a held-out ROC AUC >= 0.995 (otherwise an error)."""

    test_fraction: float = 0.2
    folds: int = 5
    grid: tuple[dict, ...] = DEFAULT_GRID
    max_trees: int = 600
    early_stopping_rounds: int = 40
    high_risk_below: float = 0.3
    low_risk_from: float = 0.6
    leakage_auc: float = 0.97
    allow_perfect: bool = False
    golden_rows: int = 8
    seed: int = 0
    jobs: int = 2
    progress: bool = True
