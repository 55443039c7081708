"""A loaded scorer: win probability, risk level and per-deal factors.

A scorer artifact (kind "scorer", built by `vectoros train scorer`) holds one
ONNX file, run by onnxruntime, with two outputs:

- `probabilities`: the XGBoost classifier as onnxmltools converts it (the raw,
  uncalibrated win probability is column 1).
- `contributions`: tree-path (Saabas) contributions of each feature to the
  margin, from a second tree ensemble with the same trees and splits, built at
  export time: per tree, walking from the root to the deal's leaf, each split
  credits its feature with the change in the node's expected value (the
  cover-weighted mean of the leaf values below it), so each leaf carries the
  sum of its path's credits per feature. Summed over trees by onnxruntime, they
  equal xgboost's `pred_contribs=True, approx_contribs=True`, with no xgboost
  and no per-tree Python at serving time. The bias (the base margin plus every
  root's expected value) is in the spec; bias + sum(contributions) is the
  model's margin in log-odds.

The manifest's `spec` (`vectoros.core.scorer_spec.ScorerSpec`, the type
training writes) also holds the feature spec, the Platt calibration of the
margin and the risk thresholds. The similarity features of a scorer trained
with them come from the similarity store (`server.engines.scoring.neighbours`,
through `server.engines.scoring.engine.ScoringEngine`) and are passed to `score`.

`load_scorer(directory, manifest)` is the model registry's loader for the kind;
it validates the spec strictly and checks on the golden rows that the two
outputs describe the same model before the version may serve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from vectoros.core.deals import DealRecord
from vectoros.core.features import FeatureSpec, featurize
from vectoros.core.manifest import ManifestError
from vectoros.core.scorer_spec import PROBABILITY_CLIP, Calibration, RiskThresholds, ScorerSpec
from vectoros.core.similar_features import SimilaritySpec

OUTPUTS = ("probabilities", "contributions")
# onnxruntime computes in float32: the logit of its probability and the sum of
# the contributions agree to ~1e-5 in the bulk, and less well only near 0 or 1.
MARGIN_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Factor:
    """One feature's push on a deal's margin (log-odds; positive raises the win chance)."""

    feature: str
    value_text: str
    contribution: float


@dataclass(frozen=True)
class DealScoreResult:
    """A deal's score. `margin` = `bias` + the sum of all contributions (not only
    the top factors shown)."""

    deal_id: str
    win_probability: float
    risk_level: str  # "low" | "medium" | "high"
    top_factors: tuple[Factor, ...]
    margin: float
    bias: float


class ScorerModel:
    """A loaded scorer version: the onnxruntime session (built once) and its spec.

    Thread-safe for concurrent `score` calls (onnxruntime's `run` is)."""

    def __init__(
        self,
        session,  # onnxruntime.InferenceSession
        spec: FeatureSpec,
        calibration: Calibration,
        risk: RiskThresholds,
        bias: float,
    ) -> None:
        self.session = session
        self.spec = spec
        self.calibration = calibration
        self.risk = risk
        self.bias = bias
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)":
            raise ValueError("the ONNX model needs one float32 input")
        shape = inputs[0].shape
        if len(shape) != 2 or shape[1] != spec.width:
            raise ValueError(f"the ONNX input shape {shape} does not match {spec.width} features")
        self._input = inputs[0].name
        outputs = {o.name: o.shape for o in session.get_outputs()}
        for name in OUTPUTS:
            if name not in outputs:
                raise ValueError(f"the ONNX model has no {name!r} output (has {sorted(outputs)})")
        if outputs["contributions"][-1] != spec.width:
            raise ValueError(f"contributions: shape {outputs['contributions']} does not match {spec.width} features")
        self._outputs = list(OUTPUTS)

    def run(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """onnxruntime's (raw win probability [N], contributions [N, F]) for a float32 matrix."""
        probabilities, contributions = self.session.run(self._outputs, {self._input: features})
        return probabilities[:, 1], contributions

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(calibrated win probabilities [N], margins [N], contributions [N, F]), float64."""
        raw, contributions = self.run(features)
        probabilities = np.array([self.calibration.probability(p) for p in raw.tolist()])
        margins = np.array([self.bias + math.fsum(row) for row in contributions.tolist()])
        return probabilities, margins, contributions.astype(np.float64)

    @property
    def similarity(self) -> SimilaritySpec | None:
        """How to compute the similarity features, or None when the scorer has none."""
        return self.spec.similarity if self.spec.similarity_columns else None

    def score(
        self,
        records: Sequence[DealRecord],
        top_factors: int = 5,
        now: datetime | None = None,
        similar: np.ndarray | None = None,
    ) -> list[DealScoreResult]:
        """Score deals as of their `snapshot_at` (or `now`). `top_factors` (0..F) is the
        number of largest contributions by absolute size returned per deal.
        `similar` [N, 2]: the similarity features of a scorer that has them
        (`server.engines.scoring.neighbours`); NaN without it."""
        if not records:
            return []
        features = featurize(records, self.spec, now=now, similar=similar)
        raw, contributions = self.run(features)
        spec, names, bias = self.spec, self.spec.features, self.bias
        calibrated, risk_level, value_text = self.calibration.probability, self.risk.level, spec.value_text
        columns = range(spec.width)
        k = min(max(top_factors, 0), spec.width)
        results = []
        # Plain Python per deal: for one deal (the common call) a dozen small NumPy
        # calls cost more than this; for 1,000 deals it is a few milliseconds.
        for record, raw_probability, row, values in zip(
            records, raw.tolist(), contributions.tolist(), features.tolist(), strict=True
        ):
            # Largest absolute contributions first; ties keep the spec's order
            # (the sort is stable, also in reverse).
            sizes = list(map(abs, row))
            top = sorted(columns, key=sizes.__getitem__, reverse=True)[:k]
            probability = calibrated(raw_probability)
            results.append(
                DealScoreResult(
                    deal_id=record.deal_id,
                    win_probability=probability,
                    risk_level=risk_level(probability),
                    top_factors=tuple([Factor(names[j], value_text(names[j], values[j]), row[j]) for j in top]),
                    # The probability comes from the model's own output; the margin
                    # is the contributions' sum, so bias + contributions == margin.
                    margin=bias + math.fsum(row),
                    bias=bias,
                )
            )
        return results


# --- loading -----------------------------------------------------------------------


def load_scorer(directory: Path, manifest) -> ScorerModel:
    """The model registry's loader for kind "scorer": validate the spec, build the
    onnxruntime session once, and check on the manifest's golden inputs that the
    model's probability and its contributions agree on the margin."""
    import onnxruntime as ort

    directory = Path(directory)
    parsed = ScorerSpec.from_dict(manifest.spec, manifest.files)
    spec, calibration, risk, model_file, bias = (
        parsed.features, parsed.calibration, parsed.risk, parsed.model_file, parsed.bias)
    options = ort.SessionOptions()
    # One thread: requests run concurrently, and a tree ensemble on one row gains
    # nothing from more.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(directory / model_file), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ManifestError(f"files.{model_file}: onnxruntime cannot load it ({exc})") from None
    try:
        model = ScorerModel(session, spec, calibration, risk, bias)
    except ValueError as exc:
        raise ManifestError(f"files.{model_file}: {exc}") from None

    for tensor in manifest.golden.get(model_file, {}).get("inputs", {}).values():
        raw, contributions = model.run(np.asarray(tensor["data"], dtype=np.float32))
        raw = np.clip(raw.astype(np.float64), PROBABILITY_CLIP, 1.0 - PROBABILITY_CLIP)
        margins = bias + contributions.astype(np.float64).sum(axis=1)
        central = np.abs(margins) < 8.0  # float32 probabilities lose the margin near 0 and 1
        gap = np.abs(np.log(raw / (1.0 - raw)) - margins)[central]
        if gap.size and gap.max() > MARGIN_TOLERANCE:
            raise ManifestError(
                f"files.{model_file}: bias + contributions differ from the probability's margin by "
                f"{gap.max():.3g} on the golden rows"
            )
    return model
