import csv
import hashlib
import re

import numpy as np
import pytest
import xgboost

from server.engines.scoring import load_scorer
from training.examples.crm_opportunities import write_csv as write_crm
from training.records import write_deals
from training.scorer import TrainConfig, TrainingError, train_scorer
from training.synth import DATE_COLUMNS, synth_deals
from vectoros.core.manifest import Manifest, run_golden, verify_files

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)

FAST = TrainConfig(grid=({"max_depth": 3, "learning_rate": 0.1, "min_child_weight": 1},), max_trees=300,
                   progress=False)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """2,000 synthetic deals plus a custom column the feature code has never heard of."""
    folder = tmp_path_factory.mktemp("synthetic")
    path = write_deals(synth_deals(2000, seed=21), folder / "deals.csv", custom_dates=DATE_COLUMNS)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for i, row in enumerate(rows):
        row["partner_tier"] = ("gold", "silver", "bronze", "")[i % 4]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = train_scorer(path, folder / "artifact", FAST)
    return path, result


def test_synthetic_end_to_end(synthetic):
    path, result = synthetic
    out = result.out_dir
    manifest = Manifest.load(out)
    assert (manifest.name, manifest.kind, manifest.version) == ("scorer", "scorer", None)
    assert set(manifest.files) == {"model.onnx", "report.html"}
    verify_files(out, manifest)
    run_golden(out, manifest)
    assert manifest.training_data["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest.signature["model.onnx"]["inputs"][0]["shape"] == [None, len(result.spec.features)]

    metrics = manifest.metrics
    # A believable model: clearly better than chance, clearly not reading the outcome.
    assert 0.72 < metrics["roc_auc"] < 0.97
    assert metrics["brier"] < 0.22 and metrics["ece"] < 0.12
    assert 0.6 < metrics["baseline_lr_roc_auc"] < 0.97
    for name in ("accuracy", "precision", "recall", "f1", "log_loss", "pr_auc", "cv_roc_auc"):
        assert 0.0 < metrics[name] < 1.0
    confusion = sum(metrics[f"confusion_{c}"] for c in ("tn", "fp", "fn", "tp"))
    assert confusion == metrics["test_rows"] == len(result.test_labels)
    assert metrics["onnx_parity_max_abs_diff"] < 1e-5
    assert metrics["contrib_parity_max_abs_diff"] < 1e-4 and metrics["contrib_margin_max_abs_diff"] < 1e-4

    # The custom column added to the CSV is a feature, with its own vocabulary.
    assert "attr.partner_tier" in result.spec.features
    assert "attr.lead_source" in result.spec.features and "attr.seats" in result.spec.features
    spec = manifest.spec["features"]
    assert sorted(spec["categories"]["attr.partner_tier"]) == ["__other__", "bronze", "gold", "silver"]

    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 3
    assert not re.search(r"(src|href)=\"https?:", report)
    assert "roc_auc" in report and "logistic regression" in report


def test_onnx_contributions_match_xgboost(synthetic):
    _, result = synthetic
    booster = result.model.get_booster()
    features = result.test_features
    assert np.isnan(features).any()  # rows with missing values take the default branches
    model = load_scorer(result.out_dir, result.manifest)
    _, contributions = model.run(features)
    native = booster.predict(xgboost.DMatrix(features, missing=np.nan), pred_contribs=True, approx_contribs=True)
    np.testing.assert_allclose(contributions, native[:, :-1], atol=1e-4)
    np.testing.assert_allclose(model.bias, native[:, -1], atol=1e-4)
    native_margin = booster.predict(xgboost.DMatrix(features, missing=np.nan), output_margin=True)
    _, margins, _ = model.predict(features)
    np.testing.assert_allclose(margins, native_margin, atol=1e-4)


def test_served_model_agrees_with_training(synthetic):
    _, result = synthetic
    model = load_scorer(result.out_dir, result.manifest)
    probabilities, margins, _ = model.predict(result.test_features)
    expected = 1 / (1 + np.exp(-(model.calibration.slope * margins + model.calibration.intercept)))
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert probabilities.min() >= 0 and probabilities.max() <= 1


def test_a_perfect_model_is_refused_as_leakage(tmp_path):
    data = write_crm(600, seed=4, path=tmp_path / "crm.csv")
    config = TrainConfig(grid=FAST.grid, folds=3, max_trees=60, leakage_auc=1.01, progress=False)
    with pytest.raises(TrainingError, match="target leakage"):
        train_scorer(data, tmp_path / "out", config)


def test_output_folder_must_be_empty(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.txt").write_text("x")
    with pytest.raises(TrainingError, match="not empty"):
        train_scorer(tmp_path / "missing.csv", tmp_path / "out", FAST)
