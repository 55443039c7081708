"""Scorer training: `train.py` runs the steps (settings in `config.py`): `split.py`, `similarity.py`, `calibration.py`,
`booster.py`, `metrics.py`, `baseline.py`; ONNX in `export.py` with `contributions.py` (the tree-path contributions)."""

from training.scorer.calibration import cross_validate, fit_platt
from training.scorer.config import DEFAULT_GRID, SMALL_GRID, TrainConfig, TrainingError
from training.scorer.export import TARGET_OPSET
from training.scorer.similarity import load_embedder_dir, similarity_columns
from training.scorer.split import leakage_screen, time_split
from training.scorer.train import MODEL_FILE, REPORT_FILE, TrainResult, train_scorer

__all__ = [
    "DEFAULT_GRID",
    "MODEL_FILE",
    "REPORT_FILE",
    "SMALL_GRID",
    "TARGET_OPSET",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "cross_validate",
    "fit_platt",
    "leakage_screen",
    "load_embedder_dir",
    "similarity_columns",
    "time_split",
    "train_scorer",
]
