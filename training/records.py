"""Read and write deal records: CSV or JSON Lines, one row per deal snapshot.

The schema is documented in docs/deal-records.md. In short: `deal_id`,
`outcome` (won / lost / open), `value` and `created_at` are required;
`closed_at` is required for closed deals; `snapshot_at` (the moment the row
describes) defaults to `created_at`. The optional fields of the `Deal` message
follow (industry, region, stage, probability, stage_history, activity counts as
`activity_<kind>` columns or an `activity_counts` JSON object, ...). Every other
column is a custom field: a column whose values are all numbers is numeric,
all ISO dates is a date, anything else is categorical. A feature-spec file
(`SpecOverrides`) can force a column's type or exclude it.

Errors name the file, the line and the column.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from vectoros.core.deals import ACTIVITY_TYPES, DealRecord, Outcome, StageChange
from vectoros.core.features import SpecOverrides

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
_DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")
_TRUE = frozenset(("true", "yes", "1", "y", "t"))
_FALSE = frozenset(("false", "no", "0", "n", "f"))


class DataError(ValueError):
    """A deal file breaks the documented schema; the message names line and column."""


@dataclass(frozen=True)
class DealData:
    """Records read from one file, with the custom columns found and their types.

    Custom date columns are stored in `numeric_attributes` as Unix seconds (the
    same way a client sends them to the server).
    """

    records: tuple[DealRecord, ...]
    custom_numeric: tuple[str, ...]
    custom_categorical: tuple[str, ...]
    custom_dates: tuple[str, ...]
    sha256: str
    source: str

    @property
    def closed(self) -> tuple[DealRecord, ...]:
        return tuple(r for r in self.records if r.outcome is not Outcome.OPEN)


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


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _is_na(value: object) -> bool:
    return _is_missing(value) or (isinstance(value, str) and value.strip().lower() in _NA_TOKENS)


def _is_number_text(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _is_date_text(text: str) -> bool:
    if not _DATE_LIKE.match(text.strip()):
        return False
    try:
        parse_time(text)
    except ValueError:
        return False
    return True


def infer_column_type(values: Iterable[object]) -> str:
    """"numeric", "date" or "categorical" for a custom column's non-missing values."""
    kinds = set()
    for value in values:
        if _is_na(value):
            continue
        if isinstance(value, bool):
            kinds.add("categorical")
        elif isinstance(value, (int, float)):
            kinds.add("numeric")
        elif isinstance(value, str):
            text = value.strip()
            kinds.add("numeric" if _is_number_text(text) else "date" if _is_date_text(text) else "categorical")
        else:
            kinds.add("categorical")
        if "categorical" in kinds or len(kinds) > 1:
            return "categorical"
    return kinds.pop() if kinds else "categorical"


# --- reading -------------------------------------------------------------------------


def _rows(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """(line number, row) for a .csv or .jsonl/.ndjson file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise DataError(f"{path}: empty file (no header)")
            duplicates = {c for c in reader.fieldnames if reader.fieldnames.count(c) > 1}
            if duplicates:
                raise DataError(f"{path}: duplicate columns {', '.join(sorted(duplicates))}")
            start = 2
            for row in reader:
                if None in row:
                    raise DataError(f"{path}:{start}: more values than header columns")
                yield start, row
                start = reader.line_num + 1
    elif suffix in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{number}: each line must be a JSON object")
                yield number, row
    else:
        raise DataError(f"{path}: unknown format {suffix!r} (use .csv or .jsonl)")


def _text(value: object) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return str(value).strip()


def _float(value: object, column: str) -> float | None:
    if _is_na(value):
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
    if _is_na(value):
        return None
    if not isinstance(value, str):
        raise ValueError(f"{column}: must be an ISO 8601 time, got {value!r}")
    try:
        return parse_time(value)
    except ValueError:
        raise ValueError(f"{column}: must be an ISO 8601 time, got {value!r}") from None


def _bool(value: object, column: str) -> bool | None:
    if _is_na(value):
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
    if _is_missing(value):
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
    if not _is_missing(blob):
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


def _record(row: dict[str, object], custom: dict[str, str]) -> DealRecord:
    for column in REQUIRED:
        if _is_missing(row.get(column)):
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
        if _is_missing(raw) or (kind != "categorical" and _is_na(raw)):
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


def read_deals(path: str | Path, overrides: SpecOverrides | None = None) -> DealData:
    """Read every row of a .csv or .jsonl deal file into records (open deals too).

    Raises DataError naming the line and column of the first bad value.
    """
    path = Path(path)
    overrides = overrides or SpecOverrides()
    try:
        rows = list(_rows(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if not rows:
        raise DataError(f"{path}: no rows")
    columns: dict[str, None] = {}
    for _, row in rows:
        columns.update(dict.fromkeys(row))
    custom: dict[str, str] = {}
    forced = {
        **{c: "numeric" for c in overrides.numeric},
        **{c: "categorical" for c in overrides.categorical},
        **{c: "date" for c in overrides.date},
    }
    for column in columns:
        if column in SCHEMA_COLUMNS:
            if column in forced:
                raise DataError(f"{path}: feature spec types {column!r}, a schema column")
            continue
        if not column or not column.strip():
            raise DataError(f"{path}: a column has no name")
        custom[column] = forced.get(column) or infer_column_type(row.get(column) for _, row in rows)

    records = []
    seen: set[tuple[str, datetime | None]] = set()
    for number, row in rows:
        try:
            record = _record(row, custom)
        except ValueError as exc:
            raise DataError(f"{path}:{number}: {exc}") from None
        key = (record.deal_id, record.snapshot_at)
        if key in seen:
            raise DataError(f"{path}:{number}: deal_id {record.deal_id!r} has two rows with the same snapshot_at")
        seen.add(key)
        records.append(record)

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return DealData(
        records=tuple(records),
        custom_numeric=tuple(sorted(c for c, k in custom.items() if k == "numeric")),
        custom_categorical=tuple(sorted(c for c, k in custom.items() if k == "categorical")),
        custom_dates=tuple(sorted(c for c, k in custom.items() if k == "date")),
        sha256=digest,
        source=str(path),
    )


# --- writing -------------------------------------------------------------------------


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


def write_deals(records: Sequence[DealRecord], path: str | Path, custom_dates: Sequence[str] = ()) -> Path:
    """Write records as .csv or .jsonl (by the file's suffix) in the documented schema."""
    path = Path(path)
    rows = [record_to_row(r, custom_dates) for r in records]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(rows)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps({k: v for k, v in row.items() if v != ""}) + "\n")
    else:
        raise DataError(f"{path}: unknown format {suffix!r} (use .csv or .jsonl)")
    return path
