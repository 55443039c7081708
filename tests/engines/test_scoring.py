import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from server.engines.scoring import RiskThresholds, load_scorer

# `tests/training` would shadow the `training` package (see tests/training/conftest.py).
from training.records import write_deals
from training.scorer import TrainConfig, train_scorer
from training.synth import DATE_COLUMNS, synth_deals
from vectoros.core.deals import DealRecord
from vectoros.core.features import featurize
from vectoros.core.manifest import Manifest, ManifestError

pytestmark = pytest.mark.slow  # builds real models (XGBoost training or the embedder export)

FAST = TrainConfig(grid=({"max_depth": 4, "learning_rate": 0.1, "min_child_weight": 1},), max_trees=200,
                   progress=False)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scorer")
    records = synth_deals(1500, seed=8)
    path = write_deals(records, folder / "deals.csv", custom_dates=DATE_COLUMNS)
    train_scorer(path, folder / "artifact", FAST)
    return folder / "artifact", records


@pytest.fixture(scope="module")
def model(artifact):
    directory, _ = artifact
    return load_scorer(directory, Manifest.load(directory))


def test_scores_add_up_and_factors_are_the_largest(model, artifact):
    _, records = artifact
    batch = records[:200]
    results = model.score(batch, top_factors=5)
    features = featurize(batch, model.spec)
    probabilities, margins, contributions = model.predict(features)
    assert [r.deal_id for r in results] == [r.deal_id for r in batch]
    for i, result in enumerate(results):
        assert 0.0 <= result.win_probability <= 1.0
        assert result.win_probability == pytest.approx(probabilities[i])
        assert result.margin == pytest.approx(result.bias + contributions[i].sum(), abs=1e-9)
        sizes = [abs(f.contribution) for f in result.top_factors]
        assert len(sizes) == 5 and sizes == sorted(sizes, reverse=True)
        assert sizes[-1] >= np.sort(np.abs(contributions[i]))[-5] - 1e-12
        assert result.risk_level == model.risk.level(result.win_probability)
    # onnxruntime's probability and the trees' margin describe the same model.
    raw = model.run(features)[0].astype(np.float64)
    np.testing.assert_allclose(np.log(raw / (1 - raw)), margins, atol=1e-4)
    assert {r.risk_level for r in results} == {"low", "medium", "high"}


def test_factor_values_are_readable(model, artifact):
    _, records = artifact
    result = model.score([records[0]], top_factors=model.spec.width + 10)[0]
    assert len(result.top_factors) == model.spec.width
    by_name = {f.feature: f.value_text for f in result.top_factors}
    assert by_name["industry"] == records[0].industry
    assert by_name["value"] == f"{records[0].value:.4g}" or by_name["value"] == str(int(records[0].value))
    assert model.score([records[0]], top_factors=0)[0].top_factors == ()


def test_a_deal_with_only_an_id_and_value_scores(model):
    now = datetime(2025, 7, 1, tzinfo=UTC)
    (result,) = model.score([DealRecord(deal_id="bare", value=1000.0)], now=now)
    assert 0.0 < result.win_probability < 1.0
    assert all(f.value_text for f in result.top_factors)
    missing = [f for f in result.top_factors if f.value_text == "missing"]
    assert missing  # unknown fields still push the score, through the trees' default branches


def test_risk_thresholds():
    risk = RiskThresholds(0.3, 0.6)
    assert [risk.level(p) for p in (0.0, 0.2999, 0.3, 0.5999, 0.6, 1.0)] == [
        "high", "high", "medium", "medium", "low", "low"]


def test_loader_rejects_a_bad_spec(artifact):
    directory, _ = artifact
    manifest = Manifest.load(directory)
    spec = manifest.spec
    bad = [
        ({**spec, "extra": 1}, "spec.extra: unknown key"),
        ({k: v for k, v in spec.items() if k != "risk"}, "spec.risk: missing key"),
        ({**spec, "risk": {"high_risk_below": 0.7, "low_risk_from": 0.6}}, "spec.risk"),
        ({**spec, "calibration": {**spec["calibration"], "slope": "1"}}, "spec.calibration.slope"),
        ({**spec, "model_file": "report.html"}, "spec.model_file"),
        ({**spec, "bias": None}, "spec.bias"),
        ({**spec, "features": {**spec["features"], "features": spec["features"]["features"][:-1]}}, "input shape"),
    ]
    for changed, message in bad:
        with pytest.raises(ManifestError, match=message.replace(".", r"\.")):
            load_scorer(directory, replace(manifest, spec=changed))


def test_loader_rejects_a_bias_that_disagrees_with_the_model(artifact):
    directory, _ = artifact
    manifest = Manifest.load(directory)
    shifted = {**manifest.spec, "bias": manifest.spec["bias"] + 0.01}
    with pytest.raises(ManifestError, match="differ from the probability's margin"):
        load_scorer(directory, replace(manifest, spec=shifted))


def test_serving_path_imports_no_training_libraries(artifact):
    directory, _ = artifact
    code = (
        "import sys\n"
        "from datetime import datetime, UTC\n"
        "from vectoros.core.manifest import Manifest\n"
        "from server.engines.scoring import load_scorer\n"
        "from vectoros.core.deals import DealRecord\n"
        f"model = load_scorer({str(directory)!r}, Manifest.load({str(directory)!r}))\n"
        "model.score([DealRecord(deal_id='a', value=1.0)], now=datetime.now(UTC))\n"
        "bad = [m for m in ('xgboost', 'sklearn', 'torch', 'onnxmltools') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
