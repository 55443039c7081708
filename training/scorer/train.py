"""Train the win/loss scorer and export it (`vectoros train scorer`).

From a deal file (docs/deal-records.md) to a model artifact ready for
`vectoros publish`, one step per function below:

1. Read the records; closed deals (won / lost) are the examples, open ones are
   skipped. Split by time: the newest `test_fraction` of deals (by creation)
   are held out, the model learns from the older ones (`split.py`).
2. Fit the feature spec on the training deals only, and screen every feature
   for leakage: a feature that alone separates won from lost almost perfectly
   (out-of-fold AUC >= `leakage_auc`) is left out and reported. With an
   embedder, the similarity features join the matrix (`similarity.py`).
3. Five-fold cross-validation (grouped by deal, stratified) over a small grid
   of XGBoost settings, each fold with early stopping; class imbalance is
   handled with `scale_pos_weight`. The best setting's out-of-fold margins fit
   the Platt calibration (two numbers, applied by the server; `calibration.py`).
4. The final model trains on all training deals and is measured on the held-out
   ones beside a logistic-regression baseline: ROC AUC, PR AUC, accuracy,
   precision, recall, F1, Brier score, log loss, expected calibration error
   and the confusion matrix (`metrics.py`, `baseline.py`).
5. Export: ONNX with onnxmltools (target opset 15), plus a `contributions`
   output computed by a second tree ensemble built from the same trees
   (`contributions.py`, read by `server.engines.scoring`); parity checks on the
   held-out rows against xgboost (recorded in the metrics; `export.py`),
   `report.html` and `manifest.json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training.scorer.baseline import logistic_baseline
from training.scorer.booster import classifier, raw_margins
from training.scorer.calibration import GridResult, cross_validate, fit_platt, sigmoid
from training.scorer.config import TrainConfig, TrainingError
from training.scorer.export import check_parity, onnx_export
from training.scorer.metrics import classification_metrics
from training.scorer.similarity import load_embedder_dir, similarity_columns, with_similarity
from training.scorer.split import labels_of, leakage_screen, time_split
from vectoros.core.deals import DealRecord
from vectoros.core.features import FeatureSpec, SpecOverrides, featurize, fit_feature_spec
from vectoros.core.similar_features import DEFAULT_K

if TYPE_CHECKING:
    from training.records import DealData

MODEL_FILE = "model.onnx"
REPORT_FILE = "report.html"


@dataclass(frozen=True)
class TrainResult:
    """What a run produced. `model` is the xgboost classifier (kept in memory for
    benchmarks and tests; the artifact holds its ONNX form)."""

    out_dir: Path
    manifest: object  # vectoros.core.manifest.Manifest
    metrics: dict[str, float]
    spec: FeatureSpec
    params: dict
    model: object = field(repr=False)
    test_features: np.ndarray = field(repr=False)
    test_labels: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class _Examples:
    """The closed deals, split by time, with their labels (1 won, 0 lost)."""

    closed: int
    skipped_open: int
    train: list[DealRecord]
    test: list[DealRecord]
    train_y: np.ndarray
    test_y: np.ndarray


@dataclass(frozen=True)
class _Matrices:
    """The fitted feature spec, both feature matrices and the leakage screen's AUCs."""

    spec: FeatureSpec
    train_x: np.ndarray
    test_x: np.ndarray
    groups: list[str]  # each training row's deal id: cross-validation keeps a deal in one fold
    screen: dict[str, float]


@dataclass(frozen=True)
class _Fitted:
    """The final classifier, the grid search that chose its settings, and its calibration."""

    model: object
    cv: list[GridResult]
    positive_weight: float
    slope: float
    intercept: float

    @property
    def best(self) -> GridResult:
        return self.cv[0]


@dataclass(frozen=True)
class _Evaluation:
    """The final model on the held-out rows, calibrated and not, beside the baseline."""

    margins: np.ndarray
    probabilities: np.ndarray
    uncalibrated: np.ndarray
    baseline_probabilities: np.ndarray
    metrics: dict[str, float]
    uncalibrated_metrics: dict[str, float]
    baseline: dict[str, float]


def train_scorer(
    data_path: str | Path,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    overrides: SpecOverrides | None = None,
    *,
    embedder: str | Path | None = None,
    similar_k: int = DEFAULT_K,
) -> TrainResult:
    """Train, evaluate and export a scorer artifact into `out_dir` (created; must be
    empty). Raises TrainingError when the data cannot give a trustworthy model.
    `embedder` (an embedder artifact folder) adds the similarity features."""
    from tqdm import tqdm

    from training.records import read_deals

    config = config or TrainConfig()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise TrainingError(f"{out_dir}: not empty (the artifact must hold only its own files)")
    bar = tqdm(total=6 + config.folds * len(config.grid), desc="train scorer", unit="step",
               disable=not config.progress)
    embedder_model = load_embedder_dir(embedder) if embedder is not None else None

    data = read_deals(data_path, overrides)
    examples = _split(data, config)
    similar = None
    if embedder_model is not None:
        bar.set_postfix_str("similar deals")
        similar = similarity_columns(
            examples.train, examples.test, embedder_model, similar_k,
            progress=lambda done, total: bar.set_postfix_str(f"embedding {done}/{total}"),
        )
    bar.set_postfix_str("features")
    matrices = _features(examples, data, overrides or SpecOverrides(), similar, config)
    bar.update(1)

    fitted = _fit(matrices, examples.train_y, config, bar)
    evaluation = _evaluate(fitted, matrices, examples.train_y, examples.test_y, config)
    bar.update(1)

    bar.set_postfix_str("export")
    out_dir.mkdir(parents=True, exist_ok=True)
    bias = onnx_export(fitted.model, matrices.spec.width, out_dir / MODEL_FILE)
    parity, contributions = check_parity(
        out_dir / MODEL_FILE, fitted.model, matrices.test_x, evaluation.margins, bias
    )
    bar.update(1)

    metrics = _all_metrics(evaluation, fitted, examples, parity)
    description = _description(Path(data_path).name, examples)
    _write_report(out_dir / REPORT_FILE, Path(data_path).name, description, matrices, fitted, evaluation,
                  examples.test_y, parity, contributions)
    manifest = _write_manifest(out_dir, data, description, metrics, matrices, fitted, bias, config)
    bar.update(1)
    bar.close()
    return TrainResult(
        out_dir=out_dir,
        manifest=manifest,
        metrics=metrics,
        spec=matrices.spec,
        params={**fitted.best.params, "n_estimators": fitted.best.trees, "scale_pos_weight": fitted.positive_weight},
        model=fitted.model,
        test_features=matrices.test_x,
        test_labels=examples.test_y,
    )


def _split(data: DealData, config: TrainConfig) -> _Examples:
    """Step 1: the closed deals split by time; each side needs 20 deals with both outcomes."""
    closed = list(data.closed)
    train, test = time_split(closed, config.test_fraction)
    train_y, test_y = labels_of(train), labels_of(test)
    for name, y in (("training", train_y), ("held-out", test_y)):
        if len(y) < 20 or y.min() == y.max():
            raise TrainingError(f"the {name} set needs at least 20 closed deals with both outcomes (has {len(y)})")
    return _Examples(len(closed), len(data.records) - len(closed), train, test, train_y, test_y)


def _features(examples: _Examples, data: DealData, overrides: SpecOverrides, similar, config: TrainConfig) -> _Matrices:
    """Step 2: fit the spec on the training deals, screen each feature for leakage,
    refit without the suspects (recorded as excluded, with their AUC)."""
    similarity, train_similar, test_similar = similar or (None, None, None)
    spec = with_similarity(fit_feature_spec(examples.train, overrides, custom_dates=data.custom_dates), similarity)
    train_x = featurize(examples.train, spec, similar=train_similar)
    groups = [r.deal_id for r in examples.train]
    screen = leakage_screen(train_x, examples.train_y, groups, spec, config.seed)
    suspects = {name: auc for name, auc in screen.items() if auc >= config.leakage_auc}
    if suspects:
        excluded = {**spec.excluded}
        spec = fit_feature_spec(
            examples.train, replace(overrides, exclude=overrides.exclude + tuple(suspects)),
            custom_dates=data.custom_dates,
        )
        excluded.update(spec.excluded)
        for name, auc in suspects.items():
            excluded[name] = f"suspected leakage: alone it separates won from lost with AUC {auc:.3f}"
        spec = with_similarity(replace(spec, excluded=dict(sorted(excluded.items()))), similarity, tuple(suspects))
        train_x = featurize(examples.train, spec, similar=train_similar)
    test_x = featurize(examples.test, spec, similar=test_similar)
    return _Matrices(spec, train_x, test_x, groups, screen)


def _fit(matrices: _Matrices, train_y: np.ndarray, config: TrainConfig, bar) -> _Fitted:
    """Step 3: choose the settings by cross-validation, calibrate on their out-of-fold
    margins, then fit the final model on every training row."""
    positive_weight = float((train_y == 0).sum() / max(1, (train_y == 1).sum()))
    bar.set_postfix_str("cross-validation")
    cv = cross_validate(matrices.train_x, train_y, matrices.groups, config, positive_weight, bar)
    slope, intercept = fit_platt(cv[0].oof_margins, train_y)

    bar.set_postfix_str("final model")
    model = classifier(cv[0].params, cv[0].trees, positive_weight, config, early=False)
    model.fit(matrices.train_x, train_y, verbose=False)
    return _Fitted(model, cv, positive_weight, slope, intercept)


def _evaluate(
    fitted: _Fitted, matrices: _Matrices, train_y: np.ndarray, test_y: np.ndarray, config: TrainConfig
) -> _Evaluation:
    """Step 4: the held-out measures; a model this perfect is refused as leakage."""
    margins = raw_margins(fitted.model, matrices.test_x)
    probabilities = sigmoid(fitted.slope * margins + fitted.intercept)
    uncalibrated = sigmoid(margins)
    metrics = classification_metrics(test_y, probabilities)
    if metrics["roc_auc"] >= 0.995 and not config.allow_perfect:
        raise TrainingError(
            f"held-out ROC AUC is {metrics['roc_auc']:.4f}: a win/loss model this perfect almost surely reads "
            "the outcome (target leakage). Check columns filled after the snapshot and exclude them in a "
            "feature spec; allow_perfect accepts it."
        )
    baseline_p = logistic_baseline(matrices.train_x, train_y, matrices.test_x, matrices.spec, config.seed)
    return _Evaluation(
        margins=margins,
        probabilities=probabilities,
        uncalibrated=uncalibrated,
        baseline_probabilities=baseline_p,
        metrics=metrics,
        uncalibrated_metrics=classification_metrics(test_y, uncalibrated),
        baseline=classification_metrics(test_y, baseline_p),
    )


def _all_metrics(evaluation: _Evaluation, fitted: _Fitted, examples: _Examples, parity: dict) -> dict[str, float]:
    """The manifest's metrics: held-out, cross-validation, baseline, parity and data sizes."""
    return {
        **evaluation.metrics,
        "cv_roc_auc": fitted.best.auc,
        "cv_roc_auc_std": fitted.best.auc_std,
        "uncalibrated_brier": evaluation.uncalibrated_metrics["brier"],
        "uncalibrated_ece": evaluation.uncalibrated_metrics["ece"],
        **{f"baseline_lr_{k}": v for k, v in evaluation.baseline.items()},
        **parity,
        "train_rows": float(len(examples.train)),
        "test_rows": float(len(examples.test)),
        "train_win_rate": float(examples.train_y.mean()),
        "test_win_rate": float(examples.test_y.mean()),
        "trees": float(fitted.best.trees),
    }


def _description(file_name: str, examples: _Examples) -> str:
    """One line on the data and the split, for the report and the manifest."""
    cutoff = min(r.created_at for r in examples.test if r.created_at is not None)
    won = int(examples.train_y.sum() + examples.test_y.sum())
    return (
        f"{file_name}: {examples.closed} closed deal snapshots ({won} won), "
        f"{examples.skipped_open} open skipped; trained on deals created before {cutoff.date().isoformat()}, "
        f"held out {len(examples.test)} newer"
    )


def _write_report(
    path: Path, file_name: str, description: str, matrices: _Matrices, fitted: _Fitted,
    evaluation: _Evaluation, test_y: np.ndarray, parity: dict, contributions: np.ndarray,
) -> None:
    """Step 5a: report.html."""
    from training import report

    spec = matrices.spec
    importance = fitted.model.get_booster().get_score(importance_type="total_gain")
    gains = {spec.features[int(k[1:])]: float(v) for k, v in importance.items()}
    report.write_report(
        path,
        report.ReportData(
            title=f"Win/loss scorer trained on {file_name}",
            description=description,
            metrics=evaluation.metrics,
            baseline=evaluation.baseline,
            uncalibrated=evaluation.uncalibrated_metrics,
            labels=test_y,
            probabilities=evaluation.probabilities,
            uncalibrated_probabilities=evaluation.uncalibrated,
            baseline_probabilities=evaluation.baseline_probabilities,
            gains=gains,
            mean_abs_contributions=dict(zip(spec.features, np.abs(contributions).mean(axis=0).tolist(), strict=True)),
            cv=[(r.params, r.auc, r.trees, r.auc_std) for r in fitted.cv],
            screen=matrices.screen,
            excluded=dict(spec.excluded),
            parity=parity,
            calibration=(fitted.slope, fitted.intercept),
            params={**fitted.best.params, "n_estimators": fitted.best.trees,
                    "scale_pos_weight": round(fitted.positive_weight, 4)},
            features=spec.features,
        ),
    )


def _write_manifest(
    out_dir: Path, data: DealData, description: str, metrics: dict[str, float], matrices: _Matrices, fitted: _Fitted,
    bias: float, config: TrainConfig,
):
    """Step 5b: manifest.json, with golden rows from the held-out matrix."""
    from vectoros.core.manifest import build_manifest
    from vectoros.core.scorer_spec import Calibration, RiskThresholds, ScorerSpec

    train_x, spec = matrices.train_x, matrices.spec
    medians = np.nanmedian(np.where(np.isnan(train_x).all(axis=0), 0.0, train_x), axis=0)
    golden = matrices.test_x[: config.golden_rows].copy()
    # JSON has no NaN: golden rows take the training median where a value is missing.
    golden = np.where(np.isnan(golden), medians, golden).astype(np.float32)
    manifest = build_manifest(
        out_dir,
        name="scorer",
        kind="scorer",
        metrics=metrics,
        training_data={"sha256": data.sha256, "rows": len(data.records), "description": description},
        spec=ScorerSpec(
            features=spec,
            calibration=Calibration(fitted.slope, fitted.intercept),
            risk=RiskThresholds(config.high_risk_below, config.low_risk_from),
            model_file=MODEL_FILE,
            bias=bias,
        ).to_dict(),
        golden_inputs={MODEL_FILE: {"features": golden}},
        atol=1e-5,
    )
    manifest.write(out_dir)
    return manifest
