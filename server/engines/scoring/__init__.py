"""Win scoring: `engine` (ScoringEngine, the one path every RPC scores through), `model` (a loaded
scorer: ONNX session, features, factors), `neighbours` (the similarity features from the store)."""

from server.engines.scoring.engine import INLINE_DEALS, MODEL, ScoredDeal, ScoringEngine
from server.engines.scoring.model import DealScoreResult, Factor, ScorerModel, load_scorer
from server.engines.scoring.neighbours import NeighbourLookup, SimilarNeighbours
from vectoros.core.scorer_spec import Calibration, RiskThresholds, ScorerSpec

__all__ = [
    "INLINE_DEALS",
    "MODEL",
    "Calibration",
    "DealScoreResult",
    "Factor",
    "NeighbourLookup",
    "RiskThresholds",
    "ScoredDeal",
    "ScorerModel",
    "ScorerSpec",
    "ScoringEngine",
    "SimilarNeighbours",
    "load_scorer",
]
