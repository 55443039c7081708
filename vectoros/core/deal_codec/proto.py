"""The API's `Deal` (protobuf) <-> `DealRecord`, and the time and outcome fields.

Checks here are the ones every service applies to a `Deal` (field shapes and
ranges); rules specific to one RPC live in its engine. Every error names the
field path the caller sent, for example ``deals[3].value``. Protobuf messages,
no transport: the servicers call this at the wire's edge.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2

from vectoros.core.deals import ACTIVITY_TYPES, MAX_ID_BYTES, DealRecord, Outcome, StageChange, check_id
from vectoros.core.errors import InvalidInput
from vectoros.v1 import common_pb2

MAX_TEXT_BYTES = 32 * 1024

_OUTCOMES = {
    common_pb2.DEAL_OUTCOME_UNSPECIFIED: Outcome.OPEN,
    common_pb2.DEAL_OUTCOME_OPEN: Outcome.OPEN,
    common_pb2.DEAL_OUTCOME_WON: Outcome.WON,
    common_pb2.DEAL_OUTCOME_LOST: Outcome.LOST,
}
_OUTCOME_TO_PROTO = {
    Outcome.OPEN: common_pb2.DEAL_OUTCOME_OPEN,
    Outcome.WON: common_pb2.DEAL_OUTCOME_WON,
    Outcome.LOST: common_pb2.DEAL_OUTCOME_LOST,
}
# Earliest and latest times accepted (google.protobuf.Timestamp's own range).
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300799
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def time_from_proto(message: timestamp_pb2.Timestamp, has: bool, field: str) -> datetime | None:
    """A Timestamp as an aware UTC datetime, or None when the field is unset."""
    if not has:
        return None
    if not _MIN_SECONDS <= message.seconds <= _MAX_SECONDS or not 0 <= message.nanos < 1_000_000_000:
        raise InvalidInput(field, "timestamp out of range")
    return datetime.fromtimestamp(message.seconds + message.nanos / 1e9, tz=UTC)


def time_to_proto(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def outcome_from_proto(value: int, field: str) -> Outcome:
    try:
        return _OUTCOMES[value]
    except KeyError:
        raise InvalidInput(field, f"unknown outcome {value}") from None


def outcome_to_proto(value: Outcome) -> int:
    return _OUTCOME_TO_PROTO[value]


def finite_non_negative(value: float, field: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(field, f"must be finite and >= 0, got {value}")
    return value


def probability(value: float, field: str) -> float:
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise InvalidInput(field, f"must be in [0, 1], got {value}")
    return value


def _time(message, name: str, field: str, history_index: int | None = None) -> datetime | None:
    """The Timestamp field `name` of `message`, or None when unset. The error's
    field path (`field`, or its ``stage_history[i]`` entry) is only formatted on
    error: this runs ~10 times per deal."""
    if not message.HasField(name):
        return None
    stamp = getattr(message, name)
    seconds, nanos = stamp.seconds, stamp.nanos
    if not (_MIN_SECONDS <= seconds <= _MAX_SECONDS and 0 <= nanos < 1_000_000_000):
        if history_index is not None:
            field = f"{field}.stage_history[{history_index}]"
        raise InvalidInput(f"{field}.{name}", "timestamp out of range")
    # Exact integer arithmetic (no float seconds); positional timedelta arguments
    # cost half of keyword ones.
    return _EPOCH + timedelta(0, seconds, nanos // 1000)


def _check_text(value: str, field: str, name: str) -> None:
    # A str of n code points is at most 4n bytes of UTF-8: most texts need no encoding to check.
    if len(value) * 4 > MAX_TEXT_BYTES and len(value.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise InvalidInput(f"{field}.{name}", f"at most {MAX_TEXT_BYTES} bytes")


def deal_from_proto(deal: common_pb2.Deal, field: str, now: datetime | None = None) -> DealRecord:
    """Check and convert one Deal. `field` is its path, e.g. ``deals[3]``.

    `now` becomes the record's snapshot time (features are computed as of it).
    This is on the path of every ScoreDeal call, hence the plain loops, field
    paths formatted only on error, and `DealRecord.from_fields`.
    """
    notes, name, company = deal.notes, deal.name, deal.company
    _check_text(notes, field, "notes")
    _check_text(name, field, "name")
    _check_text(company, field, "company")
    numeric = dict(deal.numeric_attributes)
    for key, value in numeric.items():
        if not math.isfinite(value):
            raise InvalidInput(f"{field}.numeric_attributes[{key!r}]", "must be finite")
    history = tuple([
        StageChange(change.stage, _time(change, "entered_time", field, i))
        for i, change in enumerate(deal.stage_history)
    ])
    for i, change in enumerate(history):
        if change.entered_at is None:  # a stage change without its time says nothing usable
            raise InvalidInput(f"{field}.stage_history[{i}].entered_time", "required")
    if deal.HasField("activity_counts"):
        counts = deal.activity_counts
        activity = {kind: getattr(counts, kind) for kind in ACTIVITY_TYPES}
    else:
        activity = {}  # unknown, not zero: training reads absent counts as missing
    value = deal.value
    if not (0.0 <= value < math.inf):  # also rejects NaN
        finite_non_negative(value, f"{field}.value")
    outcome = _OUTCOMES.get(deal.outcome)
    if outcome is None:
        outcome_from_proto(deal.outcome, f"{field}.outcome")
    identifier = deal.id
    if not identifier or len(identifier) * 4 > MAX_ID_BYTES:  # as in _check_text
        check_id(identifier, f"{field}.id")
    if deal.HasField("probability"):
        chance = deal.probability
        if not 0.0 <= chance <= 1.0:  # also rejects NaN
            probability(chance, f"{field}.probability")
    else:
        chance = None
    return DealRecord.from_fields({
        "deal_id": identifier,
        "workspace_id": deal.workspace_id,
        "name": name,
        "company": company,
        "industry": deal.industry,
        "region": deal.region,
        "notes": notes,
        "value": value,
        "currency": deal.currency.upper(),
        "stage": deal.stage,
        "probability": chance,
        "created_at": _time(deal, "created_time", field),
        "expected_close_at": _time(deal, "expected_close_time", field),
        "stage_entered_at": _time(deal, "stage_entered_time", field),
        "stage_history": history,
        "activity_counts": activity,
        "last_activity_at": _time(deal, "last_activity_time", field),
        "competitor_present": deal.competitor_present if deal.HasField("competitor_present") else None,
        "outcome": outcome,
        "closed_at": _time(deal, "closed_time", field),
        "owner_id": deal.owner_id,
        "contact_count": deal.contact_count,
        "numeric_attributes": numeric,
        "categorical_attributes": dict(deal.categorical_attributes),
        "snapshot_at": now or datetime.now(tz=UTC),
    })


def deal_to_proto(record: DealRecord) -> common_pb2.Deal:
    """The inverse of `deal_from_proto` (snapshot time is not part of a Deal)."""
    deal = common_pb2.Deal(
        id=record.deal_id,
        workspace_id=record.workspace_id,
        name=record.name,
        company=record.company,
        industry=record.industry,
        region=record.region,
        notes=record.notes,
        value=record.value,
        currency=record.currency,
        stage=record.stage,
        outcome=outcome_to_proto(record.outcome),
        owner_id=record.owner_id,
        contact_count=record.contact_count,
        numeric_attributes=record.numeric_attributes,
        categorical_attributes=record.categorical_attributes,
        activity_counts=common_pb2.ActivityCounts(
            **{k: v for k, v in record.activity_counts.items() if k in ACTIVITY_TYPES}
        ),
        stage_history=[
            common_pb2.StageChange(stage=change.stage, entered_time=time_to_proto(change.entered_at))
            for change in record.stage_history
        ],
    )
    if record.probability is not None:
        deal.probability = record.probability
    if record.competitor_present is not None:
        deal.competitor_present = record.competitor_present
    for name, value in (
        ("created_time", record.created_at),
        ("expected_close_time", record.expected_close_at),
        ("stage_entered_time", record.stage_entered_at),
        ("last_activity_time", record.last_activity_at),
        ("closed_time", record.closed_at),
    ):
        if value is not None:
            getattr(deal, name).CopyFrom(time_to_proto(value))
    return deal
