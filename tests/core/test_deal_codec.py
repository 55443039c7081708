"""One record, every form: the store payload and ledger snapshot (JSON), the CSV
row and the API's Deal all give the same record back, and the on-disk JSON
layout does not move (stored points and ledger rows must stay readable)."""

from datetime import UTC, datetime

import pytest

from vectoros.core.deal_codec.payload import (
    record_from_json,
    record_to_json,
    snapshot_from_json,
    snapshot_to_json,
)
from vectoros.core.deal_codec.proto import deal_from_proto, deal_to_proto
from vectoros.core.deal_codec.row import record_from_row, record_to_row
from vectoros.core.deals import MAX_ID_BYTES, DealRecord, Outcome, StageChange, check_id
from vectoros.core.errors import InvalidInput

AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
RENEWAL = datetime(2027, 1, 15, tzinfo=UTC)


def closed_record(**changes) -> DealRecord:
    fields = dict(
        deal_id="d-1", workspace_id="acme", name="Globex renewal", company="Globex", industry="saas",
        region="emea", notes="Champion left; \u00e9t\u00e9 pricing", value=125_000.5, currency="EUR",
        stage="negotiation", probability=0.4, created_at=datetime(2026, 1, 2, tzinfo=UTC),
        expected_close_at=datetime(2026, 4, 1, tzinfo=UTC), stage_entered_at=datetime(2026, 2, 1, tzinfo=UTC),
        stage_history=(StageChange("discovery", datetime(2026, 1, 2, tzinfo=UTC)),
                       StageChange("negotiation", datetime(2026, 2, 1, tzinfo=UTC))),
        activity_counts={"emails": 7, "calls": 2}, last_activity_at=datetime(2026, 2, 20, tzinfo=UTC),
        competitor_present=True, outcome=Outcome.WON, closed_at=datetime(2026, 3, 5, tzinfo=UTC),
        owner_id="rep-9", contact_count=3, numeric_attributes={"seats": 250.0, "renewal_date": RENEWAL.timestamp()},
        categorical_attributes={"lead_source": "webinar"},
    )
    fields.update(changes)
    return DealRecord(**fields)


def test_the_payload_round_trips_and_keeps_its_stored_layout():
    record = closed_record()
    text = record_to_json(record)
    assert record_from_json(text) == record
    assert text.startswith('{"deal_id":"d-1","workspace_id":"acme","name":"Globex renewal"')
    assert '"created_at":"2026-01-02T00:00:00+00:00"' in text
    assert '"stage_history":[["discovery","2026-01-02T00:00:00+00:00"],["negotiation"' in text
    assert "\u00e9t\u00e9" in text  # not escaped: ensure_ascii=False
    assert "snapshot_at" not in text


def test_a_snapshot_is_the_payload_plus_its_time_in_utc():
    record = closed_record(snapshot_at=AT)
    text = snapshot_to_json(record)
    assert text == record_to_json(record)[:-1] + ',"snapshot_at":"2026-03-01T09:30:00Z"}'
    assert snapshot_from_json(text) == record
    assert snapshot_from_json(snapshot_to_json(closed_record())).snapshot_at is None


def test_a_row_round_trips_with_custom_columns_of_each_type():
    record = closed_record(snapshot_at=AT)
    row = record_to_row(record, custom_dates=["renewal_date"])
    assert row["renewal_date"] == "2027-01-15T00:00:00Z" and row["stage_history"].startswith("discovery@2026-01-02")
    assert row["activity_emails"] == 7 and row["activity_demos"] == ""
    # A CSV hands every value back as text.
    text_row = {key: "" if value is None else str(value) for key, value in row.items()}
    custom = {"seats": "numeric", "renewal_date": "date", "lead_source": "categorical"}
    assert record_from_row(text_row, custom) == record


def test_a_row_names_the_column_that_breaks_a_rule():
    row = record_to_row(closed_record(snapshot_at=AT))
    with pytest.raises(ValueError, match="^probability: must be in"):
        record_from_row({**row, "probability": "1.5"}, {})
    with pytest.raises(ValueError, match="^closed_at: required for a won deal"):
        record_from_row({**row, "closed_at": ""}, {})


def test_the_api_deal_round_trips_through_every_form():
    # A Deal's ActivityCounts holds every kind (0 when not sent); a record without
    # counts has none at all.
    counts = {"emails": 7, "calls": 2, "meetings": 0, "demos": 1, "notes": 0, "tasks": 0}
    record = closed_record(snapshot_at=AT, activity_counts=counts)
    from_proto = deal_from_proto(deal_to_proto(record), "deal", now=AT)
    assert from_proto == record
    assert record_from_json(record_to_json(from_proto)) == record_from_json(record_to_json(record))


@pytest.mark.parametrize(
    ("value", "rule"),
    [("", "required"), ("x" * (MAX_ID_BYTES + 1), f"at most {MAX_ID_BYTES} bytes"),
     ("\U0001f600" * 33, f"at most {MAX_ID_BYTES} bytes")],
)
def test_one_id_rule(value, rule):
    with pytest.raises(InvalidInput) as error:
        check_id(value, "deals[2].id")
    assert (error.value.field, error.value.rule) == ("deals[2].id", rule)


def test_an_id_of_exactly_the_limit_passes():
    assert check_id("\U0001f600" * 32, "id") == "\U0001f600" * 32  # 4 bytes each: 128
    assert check_id("x" * MAX_ID_BYTES, "id")
