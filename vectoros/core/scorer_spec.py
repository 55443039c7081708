"""The scorer artifact's spec: the one type training writes and serving reads.

`vectoros train scorer` builds a `ScorerSpec` and writes `to_dict()` into the
manifest's `spec`; the registry's loader reads it back with
`ScorerSpec.from_dict`, strictly (an unknown or missing key fails loudly at
load, naming it). It holds the feature spec (`vectoros.core.features`, with the
optional similarity section), the Platt calibration of the margin
(`sigmoid(slope * margin + intercept)`), the risk thresholds, the ONNX file and
the bias (the base margin plus every root's expected value: bias + the sum of
the contributions is the margin in log-odds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vectoros.core.features import FeatureSpec
from vectoros.core.manifest import ManifestError

SPEC_KEYS = ("features", "calibration", "risk", "model_file", "bias")
CALIBRATION_METHOD = "platt"
# Probabilities are clipped to [PROBABILITY_CLIP, 1 - PROBABILITY_CLIP] before their logit.
PROBABILITY_CLIP = 1e-7


@dataclass(frozen=True)
class Calibration:
    """Platt scaling of the raw margin, fitted at training time on out-of-fold margins."""

    slope: float
    intercept: float

    def probability(self, raw_probability: float) -> float:
        """The calibrated probability for the model's raw probability."""
        raw = min(max(raw_probability, PROBABILITY_CLIP), 1.0 - PROBABILITY_CLIP)
        z = self.slope * math.log(raw / (1.0 - raw)) + self.intercept
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)


@dataclass(frozen=True)
class RiskThresholds:
    """High risk below `high_risk_below`, low risk at or above `low_risk_from`."""

    high_risk_below: float
    low_risk_from: float

    def level(self, win_probability: float) -> str:
        if win_probability < self.high_risk_below:
            return "high"
        if win_probability >= self.low_risk_from:
            return "low"
        return "medium"


@dataclass(frozen=True)
class ScorerSpec:
    """What a scorer manifest's `spec` holds (see the module docstring)."""

    features: FeatureSpec
    calibration: Calibration
    risk: RiskThresholds
    model_file: str
    bias: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": self.features.to_dict(),
            "calibration": {"method": CALIBRATION_METHOD, "slope": self.calibration.slope,
                            "intercept": self.calibration.intercept},
            "risk": {"high_risk_below": self.risk.high_risk_below, "low_risk_from": self.risk.low_risk_from},
            "model_file": self.model_file,
            "bias": self.bias,
        }

    @classmethod
    def from_dict(cls, spec: object, files: Mapping[str, object]) -> ScorerSpec:
        """Validate a scorer manifest's `spec` strictly; raises ManifestError naming the key."""
        spec = _exact(spec, "spec", SPEC_KEYS)
        try:
            features = FeatureSpec.from_dict(spec["features"])
        except ValueError as exc:
            raise ManifestError(f"spec.features.{exc}") from None
        calibration = _exact(spec["calibration"], "spec.calibration", ("method", "slope", "intercept"))
        if calibration["method"] != CALIBRATION_METHOD:
            raise ManifestError(f"spec.calibration.method: must be {CALIBRATION_METHOD!r}")
        risk = _exact(spec["risk"], "spec.risk", ("high_risk_below", "low_risk_from"))
        thresholds = RiskThresholds(
            _number(risk["high_risk_below"], "spec.risk.high_risk_below"),
            _number(risk["low_risk_from"], "spec.risk.low_risk_from"),
        )
        if not 0.0 <= thresholds.high_risk_below <= thresholds.low_risk_from <= 1.0:
            raise ManifestError("spec.risk: needs 0 <= high_risk_below <= low_risk_from <= 1")
        model_file = spec["model_file"]
        if not isinstance(model_file, str) or not model_file.endswith(".onnx") or model_file not in files:
            raise ManifestError("spec.model_file: must name an .onnx file listed in the manifest")
        return cls(
            features,
            Calibration(_number(calibration["slope"], "spec.calibration.slope"),
                        _number(calibration["intercept"], "spec.calibration.intercept")),
            thresholds,
            model_file,
            _number(spec["bias"], "spec.bias"),
        )


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ManifestError(f"{key}: must be a finite number")
    return float(value)


def _exact(obj: object, key: str, keys: tuple[str, ...]) -> dict:
    if not isinstance(obj, dict):
        raise ManifestError(f"{key}: must be an object")
    for name in obj:
        if name not in keys:
            raise ManifestError(f"{key}.{name}: unknown key")
    for name in keys:
        if name not in obj:
            raise ManifestError(f"{key}.{name}: missing key")
    return obj
