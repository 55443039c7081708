import math
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from vectoros.core.deals import DealRecord, Outcome, StageChange
from vectoros.core.features import (
    BUILTIN_FEATURES,
    OTHER,
    FeatureSpec,
    SpecOverrides,
    date_feature,
    featurize,
    fit_feature_spec,
    is_terminal_stage,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def deal(i: int, **changes) -> DealRecord:
    base = DealRecord(
        deal_id=f"d{i}",
        industry=("software", "retail", "health")[i % 3],
        region=("na", "emea")[i % 2],
        owner_id=f"rep-{i % 4}",
        currency="USD",
        value=1000.0 * (1 + i % 7),
        stage="discovery" if i % 5 else "prospecting",
        created_at=day(-(i % 9)),
        stage_history=(StageChange("prospecting", day(-(i % 9))),)
        + ((StageChange("discovery", day(5 + i % 3)),) if i % 5 else ()),
        activity_counts={"emails": i % 5, "calls": 1, "meetings": i % 2, "demos": 0, "notes": 2, "tasks": 0},
        last_activity_at=day(9),
        probability=0.2 + 0.01 * (i % 10),
        competitor_present=bool(i % 2),
        contact_count=i % 4,
        outcome=Outcome.WON if i % 2 else Outcome.LOST,
        closed_at=day(60),
        numeric_attributes={"seats": float(10 + i)},
        categorical_attributes={"lead_source": ("inbound", "outbound")[i % 2]},
        snapshot_at=day(10 + i % 4),
    )
    return replace(base, **changes)


@pytest.fixture(scope="module")
def records():
    return [deal(i) for i in range(40)]


@pytest.fixture(scope="module")
def spec(records):
    return fit_feature_spec(records)


def column(matrix, spec, name):
    return matrix[:, spec.features.index(name)]


def test_custom_attributes_become_features(spec):
    assert "attr.seats" in spec.features
    assert "attr.lead_source" in spec.features
    assert spec.categories["attr.lead_source"][-1] == OTHER
    assert set(spec.categories["attr.lead_source"][:-1]) == {"inbound", "outbound"}


def test_features_ignore_outcome_and_close_date(records, spec):
    one = records[3]
    flipped = replace(one, outcome=Outcome.LOST if one.outcome is Outcome.WON else Outcome.WON, closed_at=day(400))
    open_deal = replace(one, outcome=Outcome.OPEN, closed_at=None)
    rows = featurize([one, flipped, open_deal], spec)
    np.testing.assert_array_equal(rows[0], rows[1])
    np.testing.assert_array_equal(rows[0], rows[2])


def test_events_after_the_snapshot_are_ignored(spec):
    base = deal(1)
    later = replace(
        base,
        stage="negotiation",
        stage_history=base.stage_history + (StageChange("proposal", day(20)), StageChange("negotiation", day(30))),
        last_activity_at=day(25),
    )
    rows = featurize([base, later], spec)
    stage_col = column(rows, spec, "stage")
    assert stage_col[0] == stage_col[1] == spec.categories["stage"].index("discovery")
    assert column(rows, spec, "stage_changes")[1] == 2
    assert math.isnan(column(rows, spec, "days_since_last_activity")[1])
    assert column(rows, spec, "days_since_last_activity")[0] == pytest.approx(11 - 9)
    assert column(rows, spec, "days_in_stage")[0] == pytest.approx(11 - 6)
    assert column(rows, spec, "days_since_created")[0] == pytest.approx(12)


def test_terminal_stages_are_never_features(spec):
    assert is_terminal_stage("Closed Won") and is_terminal_stage("closed_lost") and is_terminal_stage("won")
    assert not is_terminal_stage("negotiation") and not is_terminal_stage("closing-call")
    record = replace(deal(2), stage="Closed Won", stage_history=(), stage_entered_at=None)
    row = featurize([record], spec)
    assert math.isnan(column(row, spec, "stage")[0])


def test_categories_unknown_and_missing(spec):
    rows = featurize([replace(deal(0), industry="aerospace"), replace(deal(0), industry="")], spec)
    industry = column(rows, spec, "industry")
    assert spec.categories["industry"][int(industry[0])] == OTHER
    assert math.isnan(industry[1])
    assert spec.value_text("industry", industry[0]) == "other"
    assert spec.value_text("industry", industry[1]) == "missing"


def test_missing_optional_fields_still_featurize(spec):
    bare = DealRecord(deal_id="x", value=5.0)
    row = featurize([bare], spec, now=day(3))
    assert row.shape == (1, spec.width) and row.dtype == np.float32
    assert column(row, spec, "value")[0] == 5.0
    assert math.isnan(column(row, spec, "probability")[0])
    assert math.isnan(column(row, spec, "attr.seats")[0])
    with pytest.raises(ValueError, match="snapshot"):
        featurize([bare], spec)


def test_date_attribute_after_the_snapshot_is_unknown():
    # `signed_at` is only filled for won deals, after they close: a classic leak.
    records = []
    for i in range(30):
        r = deal(i)
        attrs = dict(r.numeric_attributes)
        attrs["first_call_at"] = day(2).timestamp()
        if r.outcome is Outcome.WON:
            attrs["signed_at"] = day(60).timestamp()
        records.append(replace(r, numeric_attributes=attrs))
    spec = fit_feature_spec(records, custom_dates=("signed_at", "first_call_at"))
    assert date_feature("signed_at") not in spec.features
    assert spec.excluded[date_feature("signed_at")] == "no value in the training data"
    rows = featurize(records, spec)
    expected = [(r.snapshot_at - day(2)).days for r in records]
    np.testing.assert_allclose(column(rows, spec, date_feature("first_call_at")), expected)
    # Scored after signing, the date is a known past event again.
    late_records = [replace(r, snapshot_at=day(61)) for r in records[:4]]
    spec_late = fit_feature_spec(late_records, custom_dates=("signed_at",))
    signed = column(featurize(late_records, spec_late), spec_late, date_feature("signed_at"))
    assert [r.outcome for r in late_records[:2]] == [Outcome.LOST, Outcome.WON]
    assert math.isnan(signed[0]) and signed[1] == pytest.approx(1.0)


def test_overrides_exclude_and_constants(records):
    spec = fit_feature_spec(records, SpecOverrides(exclude=("seats", "probability")))
    assert "attr.seats" not in spec.features and "probability" not in spec.features
    assert spec.excluded["attr.seats"] == "excluded by the feature spec"
    assert spec.excluded["currency"] == "constant in the training data"
    assert "currency" not in spec.categories


def test_spec_round_trip_and_strictness(spec):
    data = spec.to_dict()
    again = FeatureSpec.from_dict(data)
    assert again == spec
    with pytest.raises(ValueError, match="surprise: unknown key"):
        FeatureSpec.from_dict({**data, "surprise": 1})
    with pytest.raises(ValueError, match="stage_order: missing key"):
        FeatureSpec.from_dict({k: v for k, v in data.items() if k != "stage_order"})
    with pytest.raises(ValueError, match="unknown feature"):
        FeatureSpec.from_dict({**data, "features": [*data["features"], "made_up"]})
    with pytest.raises(ValueError, match="vocabulary"):
        FeatureSpec.from_dict({**data, "categories": {**data["categories"], "industry": ["a", "b"]}})
    with pytest.raises(ValueError, match="unknown key"):
        SpecOverrides.from_dict({"numerics": ["x"]})
    with pytest.raises(ValueError, match="more than one type"):
        SpecOverrides.from_dict({"numeric": ["x"], "categorical": ["x"]})


def test_builtin_features_cover_the_families(spec):
    for name in ("days_since_created", "value", "stage_rank", "probability", "activities_total", "industry"):
        assert name in BUILTIN_FEATURES and name in spec.features


def test_feature_code_imports_no_training_libraries():
    code = (
        "import sys, vectoros.core.features, vectoros.core.deals\n"
        "bad = [m for m in ('xgboost', 'sklearn', 'torch', 'grpc') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
