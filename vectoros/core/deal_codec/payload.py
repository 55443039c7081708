"""A `DealRecord` as JSON: the record stored in a vector-store point's payload,
and the deal snapshot an insight set keeps in the ledger.

Both forms are on disk, so their layout is fixed: keys in field order, times
as ISO 8601 with their offset (`isoformat()`), a stage history as
`[stage, time]` pairs. A snapshot adds `snapshot_at` (UTC, with `Z`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from vectoros.core.deals import DealRecord, Outcome, StageChange

_TIME_FIELDS = ("created_at", "expected_close_at", "stage_entered_at", "last_activity_at", "closed_at")


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def record_to_dict(record: DealRecord) -> dict[str, Any]:
    """The stored fields of a record (everything but its snapshot time), JSON-ready."""
    return {
        "deal_id": record.deal_id,
        "workspace_id": record.workspace_id,
        "name": record.name,
        "company": record.company,
        "industry": record.industry,
        "region": record.region,
        "notes": record.notes,
        "value": record.value,
        "currency": record.currency,
        "stage": record.stage,
        "probability": record.probability,
        "created_at": _time(record.created_at),
        "expected_close_at": _time(record.expected_close_at),
        "stage_entered_at": _time(record.stage_entered_at),
        "stage_history": [[change.stage, _time(change.entered_at)] for change in record.stage_history],
        "activity_counts": dict(record.activity_counts),
        "last_activity_at": _time(record.last_activity_at),
        "competitor_present": record.competitor_present,
        "outcome": record.outcome.value,
        "closed_at": _time(record.closed_at),
        "owner_id": record.owner_id,
        "contact_count": record.contact_count,
        "numeric_attributes": dict(record.numeric_attributes),
        "categorical_attributes": dict(record.categorical_attributes),
    }


def record_from_dict(data: dict[str, Any]) -> DealRecord:
    """The inverse of `record_to_dict` (takes ownership of `data`)."""
    for key in _TIME_FIELDS:
        data[key] = _parse_time(data[key])
    data["stage_history"] = tuple(StageChange(stage, _parse_time(at)) for stage, at in data["stage_history"])
    data["outcome"] = Outcome(data["outcome"])
    return DealRecord(**data)


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def record_to_json(record: DealRecord) -> str:
    """The stored form of a deal record in a vector-store payload (no snapshot time)."""
    return _dumps(record_to_dict(record))


def record_from_json(text: str) -> DealRecord:
    return record_from_dict(json.loads(text))


def snapshot_to_json(record: DealRecord) -> str:
    """A deal snapshot for the ledger: the stored deal form plus its snapshot time."""
    data = record_to_dict(record)
    snapshot = record.snapshot_at
    data["snapshot_at"] = snapshot.astimezone(UTC).isoformat().replace("+00:00", "Z") if snapshot else None
    return _dumps(data)


def snapshot_from_json(text: str) -> DealRecord:
    data = json.loads(text)
    snapshot = data.pop("snapshot_at", None)
    record = record_from_dict(data)
    return replace(record, snapshot_at=datetime.fromisoformat(snapshot) if snapshot else None)
