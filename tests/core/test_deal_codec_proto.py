"""Deal conversion: the record a servicer builds, and the field each bad input names."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

# `tests/training` would shadow the `training` package (see tests/training/conftest.py).
from training.synth import synth_deals
from vectoros.core.deal_codec.proto import deal_from_proto, deal_to_proto
from vectoros.core.deals import DealRecord, StageChange
from vectoros.core.errors import InvalidInput
from vectoros.v1 import common_pb2

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def test_round_trip_gives_the_record_back():
    for record in synth_deals(50, seed=4):
        record = replace(
            record,
            snapshot_at=NOW,
            created_at=record.created_at + timedelta(microseconds=123456),
            competitor_present=None,
        )
        assert deal_from_proto(deal_to_proto(record), "deal", NOW) == record


def test_nanoseconds_are_truncated_to_microseconds():
    deal = common_pb2.Deal(id="d1")
    deal.created_time.seconds = 1_700_000_000
    deal.created_time.nanos = 999_999_999
    record = deal_from_proto(deal, "deal", NOW)
    assert record.created_at == datetime.fromtimestamp(1_700_000_000, UTC) + timedelta(microseconds=999_999)


def test_from_fields_is_the_constructor_for_complete_fields():
    record = DealRecord(deal_id="d1", value=5.0, stage_history=(StageChange("demo", NOW),), snapshot_at=NOW)
    values = dict(vars(record))
    assert DealRecord.from_fields(values) == record
    with pytest.raises(TypeError, match="snapshot_at"):
        DealRecord.from_fields({k: v for k, v in values.items() if k != "snapshot_at"})
    with pytest.raises(TypeError, match="color"):
        DealRecord.from_fields({**values, "color": "red"})


def _with(change) -> common_pb2.Deal:
    deal = common_pb2.Deal(id="d1", value=100.0)
    deal.stage_history.add(stage="discovery").entered_time.seconds = 1_700_000_000
    deal.stage_history.add(stage="demo").entered_time.seconds = 1_700_100_000
    change(deal)
    return deal


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: setattr(d, "id", "x" * 129), "deals[2].id: at most 128 bytes"),
        (lambda d: setattr(d, "notes", "é" * 20_000), "deals[2].notes: at most 32768 bytes"),
        (lambda d: setattr(d, "company", "x" * 40_000), "deals[2].company: at most 32768 bytes"),
        (lambda d: setattr(d.created_time, "seconds", 253402300800), "deals[2].created_time: timestamp out of range"),
        (lambda d: setattr(d.closed_time, "nanos", -1), "deals[2].closed_time: timestamp out of range"),
        (lambda d: setattr(d.stage_history[1].entered_time, "nanos", 1_000_000_000),
         "deals[2].stage_history[1].entered_time: timestamp out of range"),
        (lambda d: setattr(d, "probability", float("nan")), "deals[2].probability: must be in [0, 1], got nan"),
        (lambda d: d.stage_history.add(stage="proposal"), "deals[2].stage_history[2].entered_time: required"),
    ],
)
def test_bad_input_names_the_field(change, message):
    with pytest.raises(InvalidInput) as raised:
        deal_from_proto(_with(change), "deals[2]", NOW)
    assert str(raised.value) == message
