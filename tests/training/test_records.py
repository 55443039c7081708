import json
from datetime import UTC, datetime

import pytest

from training.records import DataError, infer_column_type, parse_time, read_deals, write_deals
from training.synth import DATE_COLUMNS, synth_deals
from vectoros.core.deals import Outcome, StageChange
from vectoros.core.features import SpecOverrides

HEADER = "deal_id,outcome,value,created_at,closed_at"


def write(tmp_path, text, name="deals.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_write_then_read_gives_the_same_records(tmp_path, suffix):
    records = synth_deals(60, seed=3)
    path = write_deals(records, tmp_path / f"deals{suffix}", custom_dates=DATE_COLUMNS)
    data = read_deals(path)
    assert data.records == tuple(records)
    assert data.custom_numeric == ("employees", "seats")
    assert data.custom_categorical == ("lead_source",)
    assert data.custom_dates == ("first_meeting_at",)
    assert len(data.sha256) == 64


def test_schema_fields_and_defaults(tmp_path):
    path = write(
        tmp_path,
        "deal_id,outcome,value,created_at,closed_at,snapshot_at,stage_history,activity_counts,"
        "competitor_present,probability,currency,plan,zip,renewal_on\n"
        'a1,Won,1200,2024-01-01,2024-02-01T10:00:00Z,,"discovery@2024-01-01;proposal@2024-01-10T00:00:00+02:00",'
        '"{""emails"": 3, ""calls"": 1}",yes,0.4,eur,gold,02139,2024-05-01\n'
        "a2,open,0,2024-01-05T08:00:00,,2024-01-20T00:00:00Z,,,,,usd,,10001,\n",
    )
    data = read_deals(path)
    won, open_deal = data.records
    assert won.outcome is Outcome.WON and open_deal.outcome is Outcome.OPEN
    assert won.snapshot_at == won.created_at == datetime(2024, 1, 1, tzinfo=UTC)
    assert open_deal.snapshot_at == datetime(2024, 1, 20, tzinfo=UTC)
    assert won.stage_history == (
        StageChange("discovery", datetime(2024, 1, 1, tzinfo=UTC)),
        StageChange("proposal", datetime(2024, 1, 9, 22, tzinfo=UTC)),
    )
    assert won.activity_counts == {"emails": 3, "calls": 1}
    assert open_deal.activity_counts == {}
    assert won.competitor_present is True and open_deal.competitor_present is None
    assert won.currency == "EUR"
    assert data.custom_categorical == ("plan",)
    assert data.custom_numeric == ("zip",)
    assert data.custom_dates == ("renewal_on",)
    assert won.numeric_attributes["renewal_on"] == datetime(2024, 5, 1, tzinfo=UTC).timestamp()
    # A feature-spec file can say that a numeric-looking column is a category.
    forced = read_deals(path, SpecOverrides(categorical=("zip",)))
    assert forced.custom_categorical == ("plan", "zip")
    assert forced.records[0].categorical_attributes["zip"] == "02139"


def test_json_lines_with_native_types(tmp_path):
    rows = [
        {"deal_id": "j1", "outcome": "lost", "value": 10, "created_at": "2024-01-01", "closed_at": "2024-03-01",
         "stage_history": [{"stage": "demo", "entered_at": "2024-01-02"}], "seats": 12, "vip": True},
        {"deal_id": "j2", "outcome": "won", "value": 20.5, "created_at": "2024-01-01", "closed_at": "2024-03-01",
         "activity_emails": 4, "seats": None, "vip": False},
    ]
    path = write(tmp_path, "\n".join(json.dumps(r) for r in rows) + "\n", "deals.jsonl")
    data = read_deals(path)
    assert data.records[0].stage_history[0].stage == "demo"
    assert data.records[1].activity_counts == {"emails": 4}
    assert data.custom_numeric == ("seats",) and data.custom_categorical == ("vip",)
    assert data.records[0].categorical_attributes == {"vip": "true"}
    assert data.records[1].numeric_attributes == {}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (",won,1,2024-01-01,2024-02-01", ":2: deal_id: required"),
        ("a,maybe,1,2024-01-01,2024-02-01", ":2: outcome: must be won, lost or open"),
        ("a,won,1,2024-01-01,", ":2: closed_at: required for a won deal"),
        ("a,open,1,2024-01-01,2024-02-01", ":2: closed_at: set on an open deal"),
        ("a,won,-5,2024-01-01,2024-02-01", ":2: value: must be >= 0"),
        ("a,won,inf,2024-01-01,2024-02-01", ":2: value: must be finite"),
        ("a,won,1,yesterday,2024-02-01", ":2: created_at: must be an ISO 8601 time"),
    ],
)
def test_bad_rows_name_line_and_column(tmp_path, row, message):
    path = write(tmp_path, f"{HEADER}\nok,lost,1,2024-01-01,2024-01-05\n{row}\n".replace(":2:", ":3:"))
    with pytest.raises(DataError, match=message.replace(":2:", ":3:")):
        read_deals(path)


def test_snapshot_after_close_and_bad_probability_are_rejected(tmp_path):
    path = write(tmp_path, f"{HEADER},snapshot_at\na,won,1,2024-01-01,2024-02-01,2024-03-01\n")
    with pytest.raises(DataError, match="snapshot_at: after closed_at"):
        read_deals(path)
    path = write(tmp_path, f"{HEADER},probability\na,won,1,2024-01-01,2024-02-01,40\n")
    with pytest.raises(DataError, match=r"probability: must be in \[0, 1\]"):
        read_deals(path)
    path = write(tmp_path, f"{HEADER},stage_history\na,won,1,2024-01-01,2024-02-01,b@2024-01-05;a@2024-01-02\n")
    with pytest.raises(DataError, match="oldest first"):
        read_deals(path)


def test_type_inference():
    assert infer_column_type(["1", "2.5", "", "NA"]) == "numeric"
    assert infer_column_type(["2024-01-01", "2024-02-03T04:05:06Z"]) == "date"
    assert infer_column_type(["1", "gold"]) == "categorical"
    assert infer_column_type(["20240101"]) == "numeric"
    assert parse_time("2024-01-01T12:00:00+02:00") == datetime(2024, 1, 1, 10, tzinfo=UTC)
