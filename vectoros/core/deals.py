"""The engine-side deal record: plain Python mirror of `vectoros.v1.Deal`.

Servicers convert protobuf deals into `DealRecord`; the training package reads
CSV / JSON Lines rows into the same class, so features are computed by one code
path for training and serving.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum

from vectoros.core.errors import InvalidInput

# Deal, workspace, insight and feedback ids: the one rule for all of them.
MAX_ID_BYTES = 128


class Outcome(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


ACTIVITY_TYPES = ("emails", "calls", "meetings", "demos", "notes", "tasks")


@dataclass(frozen=True)
class StageChange:
    stage: str
    entered_at: datetime


@dataclass(frozen=True)
class DealRecord:
    """One deal snapshot. Times are timezone-aware UTC; money is in major units.

    `snapshot_at` is the moment the record describes: features use nothing
    after it. For a live request it is the time of the request.
    """

    deal_id: str
    workspace_id: str = ""
    name: str = ""
    company: str = ""
    industry: str = ""
    region: str = ""
    notes: str = ""
    value: float = 0.0
    currency: str = ""
    stage: str = ""
    probability: float | None = None
    created_at: datetime | None = None
    expected_close_at: datetime | None = None
    stage_entered_at: datetime | None = None
    stage_history: tuple[StageChange, ...] = ()
    activity_counts: dict[str, int] = field(default_factory=dict)
    last_activity_at: datetime | None = None
    competitor_present: bool | None = None
    outcome: Outcome = Outcome.OPEN
    closed_at: datetime | None = None
    owner_id: str = ""
    contact_count: int = 0
    numeric_attributes: dict[str, float] = field(default_factory=dict)
    categorical_attributes: dict[str, str] = field(default_factory=dict)
    snapshot_at: datetime | None = None

    @classmethod
    def from_fields(cls, values: dict[str, object]) -> DealRecord:
        """`DealRecord(**values)` when `values` names every field, without the frozen
        `__init__`'s `object.__setattr__` per field: 25 of them cost ~4 us, on the
        path of every ScoreDeal call. The result is the record `DealRecord(**values)`
        builds (equal, same repr, immutable); no defaults are filled in, so a missing
        or unknown name is a TypeError."""
        if values.keys() != _RECORD_FIELDS:
            wrong = sorted(values.keys() ^ _RECORD_FIELDS)
            raise TypeError(f"DealRecord.from_fields: fields {wrong} missing or unknown")
        record = object.__new__(cls)
        record.__dict__.update(values)
        return record


_RECORD_FIELDS = frozenset(f.name for f in fields(DealRecord))


def check_id(value: str, field: str) -> str:
    """An id (of a deal, a workspace, ...) at `field`: non-empty, at most
    `MAX_ID_BYTES` bytes of UTF-8. Returns it; raises InvalidInput naming `field`."""
    if not value:
        raise InvalidInput(field, "required")
    if len(value) * 4 > MAX_ID_BYTES and len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise InvalidInput(field, f"at most {MAX_ID_BYTES} bytes")
    return value
