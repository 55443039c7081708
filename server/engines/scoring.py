"""The Scoring engine: win probability, risk level and per-deal factors.

A scorer artifact (kind "scorer", built by `vectoros train scorer`) holds:

- `model.onnx`: the XGBoost classifier converted with onnxmltools; onnxruntime
  runs it and gives the raw win probability.
- `trees.npz`: the same trees as flat arrays (`TreeExplainer`), from which the
  engine computes tree-path (Saabas) contributions in NumPy, without xgboost.
  Per tree, walking from the root to the deal's leaf, each split credits its
  feature with the change in the node's expected value (the cover-weighted mean
  of the leaf values below it). The bias is the base margin plus every root's
  expected value, so bias + sum(contributions) is exactly the sum of the leaf
  values: the model's margin in log-odds. This equals xgboost's
  `pred_contribs=True, approx_contribs=True`.
- the manifest's `spec`: the feature spec (`server.engines.features`), the
  Platt calibration of the margin (`sigmoid(slope * margin + intercept)`) and
  the risk thresholds.

`load_scorer(directory, manifest)` is the model registry's loader for the kind;
it validates the spec strictly and checks that onnxruntime and the tree arrays
agree on the golden rows before the version may serve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from server.engines.deals import DealRecord
from server.engines.features import FeatureSpec, featurize
from server.models.manifest import ManifestError

SPEC_KEYS = ("features", "calibration", "risk", "model_file", "trees_file")
TREE_ARRAYS = ("feature", "threshold", "left", "right", "missing", "value", "roots", "base_margin", "depth")
# onnxruntime computes the probability in float32; its logit differs from the
# trees' float64 margin by ~1e-6 in the bulk and more only near 0 or 1.
MARGIN_TOLERANCE = 1e-3
_P_CLIP = 1e-7


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


@dataclass(frozen=True)
class Calibration:
    """Platt scaling of the raw margin, fitted at training time on out-of-fold margins."""

    slope: float
    intercept: float

    def apply(self, margin: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.slope * margin + self.intercept)))


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


class TreeExplainer:
    """Tree-path contributions from flat tree arrays (see the module docstring).

    Arrays (all trees concatenated, child indices global): `feature` (int32, -1 at
    leaves), `threshold` (float32; a row goes left when `x < threshold`),
    `left`, `right`, `missing` (int32; where NaN goes; leaves point to
    themselves), `value` (float64 expected value of each node), `roots`
    (int32 per tree), `base_margin` (float64) and `depth` (int, the longest path).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], width: int) -> None:
        self.feature = np.asarray(arrays["feature"], dtype=np.int32)
        self.threshold = np.asarray(arrays["threshold"], dtype=np.float32)
        self.left = np.asarray(arrays["left"], dtype=np.int32)
        self.right = np.asarray(arrays["right"], dtype=np.int32)
        self.missing = np.asarray(arrays["missing"], dtype=np.int32)
        self.value = np.asarray(arrays["value"], dtype=np.float64)
        self.roots = np.asarray(arrays["roots"], dtype=np.int32)
        self.base_margin = float(arrays["base_margin"])
        self.depth = int(arrays["depth"])
        self.width = width
        nodes = self.feature.size
        for name in ("threshold", "left", "right", "missing", "value"):
            if getattr(self, name).shape != (nodes,):
                raise ValueError(f"{name}: must have one entry per node ({nodes})")
        for name in ("left", "right", "missing", "roots"):
            array = getattr(self, name)
            if array.size and (array.min() < 0 or array.max() >= nodes):
                raise ValueError(f"{name}: node index out of range")
        if self.feature.max(initial=-1) >= width or self.feature.min(initial=-1) < -1:
            raise ValueError(f"feature: index out of range for {width} features")
        if not (np.all(np.isfinite(self.value)) and math.isfinite(self.base_margin)) or self.depth < 0:
            raise ValueError("value, base_margin and depth must be finite")
        # Leaves have no feature; -1 would index the last column, so use column 0
        # and mask the (zero) deltas instead.
        self._gather_feature = np.maximum(self.feature, 0)
        self.bias = self.base_margin + float(self.value[self.roots].sum())

    @classmethod
    def load(cls, path: Path, width: int) -> TreeExplainer:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in TREE_ARRAYS if name not in data.files]
            extra = [name for name in data.files if name not in TREE_ARRAYS]
            if missing or extra:
                raise ValueError(f"arrays: missing {missing}, unknown {extra}")
            return cls({name: data[name] for name in TREE_ARRAYS}, width)

    def explain(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(margins [N], contributions [N, width]) for a float32 matrix [N, width].
        margins[i] == self.bias + contributions[i].sum()."""
        rows = features.shape[0]
        trees = self.roots.size
        node = np.broadcast_to(self.roots, (rows, trees)).copy()
        contributions = np.zeros(rows * self.width, dtype=np.float64)
        row_base = (np.arange(rows, dtype=np.int64) * self.width)[:, None]
        flat = features.reshape(-1)
        # Level by level for all trees and rows at once; a row that reached its
        # leaf stays there (a leaf's children are itself) and adds nothing.
        for _ in range(self.depth):
            column = self._gather_feature[node]
            x = flat[row_base + column]
            child = np.where(x < self.threshold[node], self.left[node], self.right[node])
            child = np.where(np.isnan(x), self.missing[node], child)
            delta = self.value[child] - self.value[node]
            contributions += np.bincount((row_base + column).reshape(-1), delta.reshape(-1), rows * self.width)
            node = child
        contributions = contributions.reshape(rows, self.width)
        margins = self.base_margin + self.value[node].sum(axis=1)
        return margins, contributions


class ScorerModel:
    """A loaded scorer version: onnxruntime session, tree arrays and spec.

    Thread-safe for concurrent `score` calls (onnxruntime's `run` is)."""

    def __init__(
        self,
        session,  # onnxruntime.InferenceSession
        explainer: TreeExplainer,
        spec: FeatureSpec,
        calibration: Calibration,
        risk: RiskThresholds,
    ) -> None:
        self.session = session
        self.explainer = explainer
        self.spec = spec
        self.calibration = calibration
        self.risk = risk
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)":
            raise ValueError("model.onnx: needs one float32 input")
        shape = inputs[0].shape
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != spec.width):
            raise ValueError(f"model.onnx: input shape {shape} does not match {spec.width} features")
        self._input = inputs[0].name
        outputs = [o.name for o in session.get_outputs()]
        if "probabilities" not in outputs:
            raise ValueError(f"model.onnx: no 'probabilities' output (has {outputs})")
        self._outputs = ["probabilities"]

    def raw_probability(self, features: np.ndarray) -> np.ndarray:
        """onnxruntime's uncalibrated win probability [N] for a float32 matrix."""
        (probabilities,) = self.session.run(self._outputs, {self._input: features})
        return probabilities[:, 1]

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(calibrated win probabilities [N], margins [N], contributions [N, F])."""
        raw = self.raw_probability(features).astype(np.float64)
        clipped = np.clip(raw, _P_CLIP, 1.0 - _P_CLIP)
        onnx_margin = np.log(clipped / (1.0 - clipped))
        margins, contributions = self.explainer.explain(features)
        return self.calibration.apply(onnx_margin), margins, contributions

    def score(
        self, records: Sequence[DealRecord], top_factors: int = 5, now: datetime | None = None
    ) -> list[DealScoreResult]:
        """Score deals as of their `snapshot_at` (or `now`). `top_factors` (0..F) is the
        number of largest contributions by absolute size returned per deal."""
        if not records:
            return []
        features = featurize(records, self.spec, now=now)
        probabilities, margins, contributions = self.predict(features)
        k = min(max(top_factors, 0), self.spec.width)
        # Largest absolute contributions first; ties keep the spec's feature order.
        top = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
        names = self.spec.features
        results = []
        for i, record in enumerate(records):
            factors = tuple(
                Factor(names[j], self.spec.value_text(names[j], float(features[i, j])), float(contributions[i, j]))
                for j in top[i].tolist()
            )
            probability = float(probabilities[i])
            results.append(
                DealScoreResult(
                    deal_id=record.deal_id,
                    win_probability=probability,
                    risk_level=self.risk.level(probability),
                    top_factors=factors,
                    margin=float(margins[i]),
                    bias=self.explainer.bias,
                )
            )
        return results


# --- loading -----------------------------------------------------------------------


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


def parse_spec(spec: object, files: Mapping[str, object]) -> tuple[FeatureSpec, Calibration, RiskThresholds, str, str]:
    """Validate a scorer manifest's `spec` strictly; raises ManifestError naming the key."""
    spec = _exact(spec, "spec", SPEC_KEYS)
    try:
        features = FeatureSpec.from_dict(spec["features"])
    except ValueError as exc:
        raise ManifestError(f"spec.features.{exc}") from None
    calibration = _exact(spec["calibration"], "spec.calibration", ("method", "slope", "intercept"))
    if calibration["method"] != "platt":
        raise ManifestError("spec.calibration.method: must be 'platt'")
    risk = _exact(spec["risk"], "spec.risk", ("high_risk_below", "low_risk_from"))
    thresholds = RiskThresholds(
        _number(risk["high_risk_below"], "spec.risk.high_risk_below"),
        _number(risk["low_risk_from"], "spec.risk.low_risk_from"),
    )
    if not 0.0 <= thresholds.high_risk_below <= thresholds.low_risk_from <= 1.0:
        raise ManifestError("spec.risk: needs 0 <= high_risk_below <= low_risk_from <= 1")
    names = []
    for key in ("model_file", "trees_file"):
        name = spec[key]
        if not isinstance(name, str) or name not in files:
            raise ManifestError(f"spec.{key}: must name a file listed in the manifest")
        names.append(name)
    return (
        features,
        Calibration(_number(calibration["slope"], "spec.calibration.slope"),
                    _number(calibration["intercept"], "spec.calibration.intercept")),
        thresholds,
        names[0],
        names[1],
    )


def load_scorer(directory: Path, manifest) -> ScorerModel:
    """The model registry's loader for kind "scorer": build the onnxruntime session
    once, load the tree arrays, validate the spec, and check on the manifest's
    golden inputs that onnxruntime's margin and the trees' margin agree."""
    import onnxruntime as ort

    directory = Path(directory)
    spec, calibration, risk, model_file, trees_file = parse_spec(manifest.spec, manifest.files)
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
        explainer = TreeExplainer.load(directory / trees_file, spec.width)
        model = ScorerModel(session, explainer, spec, calibration, risk)
    except (ValueError, OSError) as exc:
        raise ManifestError(f"spec: {exc}") from None

    golden = manifest.golden.get(model_file, {}).get("inputs", {})
    for tensor in golden.values():
        rows = np.asarray(tensor["data"], dtype=np.float32)
        raw = np.clip(model.raw_probability(rows).astype(np.float64), _P_CLIP, 1.0 - _P_CLIP)
        margins, _ = explainer.explain(rows)
        central = np.abs(margins) < 8.0  # float32 probabilities lose the margin near 0 and 1
        gap = np.abs(np.log(raw / (1.0 - raw)) - margins)[central]
        if gap.size and gap.max() > MARGIN_TOLERANCE:
            raise ManifestError(
                f"files.{trees_file}: tree margins differ from onnxruntime by {gap.max():.3g} on the golden rows"
            )
    return model
