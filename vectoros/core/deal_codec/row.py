"""A `DealRecord` as a row of the deal-records schema (docs/deal-records.md):
one flat dict per deal snapshot, as a CSV line or a JSON Lines object holds it.

`record_to_row` writes the documented columns (text values for CSV);
`record_from_row` reads one row back, given the types of its custom columns
("numeric", "date" or "categorical"), and raises ValueError naming the column.
Reading whole files (type inference, line numbers) is the training package's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime

from vectoros.core.deals import ACTIVITY_TYPES, DealRecord, Outcome, StageChange

REQUIRED = ("deal_id", "outcome", "value", "created_at")
TEXT_FIELDS = ("workspace_id", "name", "company", "industry", "region", "notes", "currency", "stage", "owner_id")
TIME_FIELDS = ("created_at", "closed_at", "snapshot_at", "expected_close_at", "stage_entered_at", "last_activity_at")
ACTIVITY_COLUMNS = tuple(f"activity_{kind}" for kind in ACTIVITY_TYPES)
SCHEMA_COLUMNS = frozenset(
    (
        "deal_id", "outcome", "value", "probability", "stage_history", "activity_counts",
        "competitor_present", "contact_count",
        *TEXT_FIELDS, *TIME_FIELDS, *ACTIVITY_COLUMNS,
    )
)
# Placeholders read as "no value" in number, time and boolean columns. Text keeps
# them: "na" is North America in a region column.
_NA_TOKENS = frozenset(("na", "n/a", "nan", "null", "none"))
_TRUE = frozenset(("true", "yes", "1", "y", "t"))
_FALSE = frozenset(("false", "no", "0", "n", "f"))


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time as aware UTC. A date is midnight UTC; a time without
    an offset is taken as UTC."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def is_missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def is_na(value: object) -> bool:
    return is_missing(value) or (isinstance(value, str) and value.strip().lower() in _NA_TOKENS)


def _text(value: object) -> str:
    if is_missing(value):
        return ""
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value).strip()


def _float(value: object, column: str) -> float | None:
    if is_na(value):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{column}: must be a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{column}: must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{column}: must be finite, got {value!r}")
    return number


def _count(value: object, column: str) -> int | None:
    number = _float(value, column)
    if number is None:
        return None
    if number < 0 or number != int(number):
        raise ValueError(f"{column}: must be a whole number >= 0, got {value!r}")
    return int(number)


def _time(value: object, column: str) -> datetime | None:
    if is_na(value):
        return None
    if not isinstance(value, str):
        raise ValueError(f"{column}: must be an ISO 8601 time, got {value!r}")
    try:
        return parse_time(value)
    except ValueError:
        raise ValueError(f"{column}: must be an ISO 8601 time, got {value!r}") from None


def _bool(value: object, column: str) -> bool | None:
    if is_na(value):
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{column}: must be true or false, got {value!r}")


def _stage_history(value: object) -> tuple[StageChange, ...]:
    """JSON (`[{"stage": ..., "entered_at": ...}]`) or `stage@time;stage@time`."""
    if is_missing(value):
        return ()
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"stage_history: not valid JSON ({exc.msg})") from None
    changes = []
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, dict) or set(item) != {"stage", "entered_at"}:
                raise ValueError(f"stage_history[{i}]: must be {{\"stage\": ..., \"entered_at\": ...}}")
            stage = _text(item["stage"])
            entered = _time(item["entered_at"], f"stage_history[{i}].entered_at")
            if not stage or entered is None:
                raise ValueError(f"stage_history[{i}]: needs a stage and a time")
            changes.append(StageChange(stage, entered))
    elif isinstance(value, str):
        for i, part in enumerate(p for p in value.split(";") if p.strip()):
            stage, at, time_text = part.rpartition("@")
            if not at or not stage.strip():
                raise ValueError(f"stage_history[{i}]: must be stage@time, got {part!r}")
            entered = _time(time_text, f"stage_history[{i}]")
            assert entered is not None
            changes.append(StageChange(stage.strip(), entered))
    else:
        raise ValueError("stage_history: must be a JSON list or stage@time;stage@time")
    if any(b.entered_at < a.entered_at for a, b in zip(changes, changes[1:], strict=False)):
        raise ValueError("stage_history: entries must be oldest first")
    return tuple(changes)


def _activity_counts(row: dict[str, object]) -> dict[str, int]:
    counts: dict[str, int] = {}
    blob = row.get("activity_counts")
    if not is_missing(blob):
        if isinstance(blob, str):
            try:
                blob = json.loads(blob)
            except json.JSONDecodeError as exc:
                raise ValueError(f"activity_counts: not valid JSON ({exc.msg})") from None
        if not isinstance(blob, dict):
            raise ValueError("activity_counts: must be an object of counts by type")
        for kind, value in blob.items():
            if kind not in ACTIVITY_TYPES:
                raise ValueError(f"activity_counts.{kind}: unknown type (known: {', '.join(ACTIVITY_TYPES)})")
            number = _count(value, f"activity_counts.{kind}")
            if number is not None:
                counts[kind] = number
    for kind, column in zip(ACTIVITY_TYPES, ACTIVITY_COLUMNS, strict=True):
        number = _count(row.get(column), column)
        if number is not None:
            if kind in counts:
                raise ValueError(f"{column}: also given in activity_counts")
            counts[kind] = number
    return counts


def _outcome(value: object) -> Outcome:
    text = _text(value).lower()
    try:
        return Outcome(text)
    except ValueError:
        raise ValueError(f"outcome: must be won, lost or open, got {value!r}") from None


def record_from_row(row: dict[str, object], custom: dict[str, str]) -> DealRecord:
    """One row as a record. `custom` maps each custom column to its type
    ("numeric", "date" or "categorical"); custom dates become Unix seconds in
    `numeric_attributes`, as a client sends them. Raises ValueError naming the column."""
    for column in REQUIRED:
        if is_missing(row.get(column)):
            raise ValueError(f"{column}: required")
    outcome = _outcome(row["outcome"])
    times = {column: _time(row.get(column), column) for column in TIME_FIELDS}
    created = times["created_at"]
    snapshot = times["snapshot_at"] or created
    closed = times["closed_at"]
    assert created is not None and snapshot is not None
    if outcome is Outcome.OPEN:
        if closed is not None:
            raise ValueError("closed_at: set on an open deal")
    else:
        if closed is None:
            raise ValueError(f"closed_at: required for a {outcome.value} deal")
        if snapshot > closed:
            raise ValueError("snapshot_at: after closed_at (a snapshot describes the deal before it closed)")
    if snapshot < created:
        raise ValueError("snapshot_at: before created_at")
    value = _float(row["value"], "value")
    assert value is not None
    if value < 0:
        raise ValueError(f"value: must be >= 0, got {row['value']!r}")
    probability = _float(row.get("probability"), "probability")
    if probability is not None and not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability: must be in [0, 1], got {row.get('probability')!r}")

    numeric: dict[str, float] = {}
    categorical: dict[str, str] = {}
    for column, kind in custom.items():
        raw = row.get(column)
        if is_missing(raw) or (kind != "categorical" and is_na(raw)):
            continue
        if kind == "numeric":
            number = _float(raw, column)
            assert number is not None
            numeric[column] = number
        elif kind == "date":
            moment = _time(raw if isinstance(raw, str) else str(raw), column)
            assert moment is not None
            numeric[column] = moment.timestamp()
        else:
            categorical[column] = str(raw).lower() if isinstance(raw, bool) else _text(raw)

    return DealRecord(
        deal_id=_text(row["deal_id"]),
        **{name: _text(row.get(name)) for name in TEXT_FIELDS if name != "currency"},
        currency=_text(row.get("currency")).upper(),
        value=value,
        probability=probability,
        created_at=created,
        expected_close_at=times["expected_close_at"],
        stage_entered_at=times["stage_entered_at"],
        stage_history=_stage_history(row.get("stage_history")),
        activity_counts=_activity_counts(row),
        last_activity_at=times["last_activity_at"],
        competitor_present=_bool(row.get("competitor_present"), "competitor_present"),
        outcome=outcome,
        closed_at=closed,
        contact_count=_count(row.get("contact_count"), "contact_count") or 0,
        numeric_attributes=numeric,
        categorical_attributes=categorical,
        snapshot_at=snapshot,
    )


def record_to_row(record: DealRecord, custom_dates: Sequence[str] = ()) -> dict[str, object]:
    """One record as a flat row of the documented schema (text values for CSV)."""
    row: dict[str, object] = {
        "deal_id": record.deal_id,
        "outcome": record.outcome.value,
        "value": record.value,
    }
    for name in TIME_FIELDS:
        moment = getattr(record, name)
        row[name] = format_time(moment) if moment is not None else ""
    for name in TEXT_FIELDS:
        row[name] = getattr(record, name)
    row["probability"] = "" if record.probability is None else record.probability
    row["stage_history"] = ";".join(f"{c.stage}@{format_time(c.entered_at)}" for c in record.stage_history)
    for kind, column in zip(ACTIVITY_TYPES, ACTIVITY_COLUMNS, strict=True):
        row[column] = record.activity_counts.get(kind, "")
    row["competitor_present"] = "" if record.competitor_present is None else str(record.competitor_present).lower()
    row["contact_count"] = record.contact_count
    dates = set(custom_dates)
    for name, value in record.numeric_attributes.items():
        row[name] = format_time(datetime.fromtimestamp(value, tz=UTC)) if name in dates else value
    row.update(record.categorical_attributes)
    return row
