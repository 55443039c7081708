"""Read and write deal files: CSV or JSON Lines, one row per deal snapshot.

The schema is documented in docs/deal-records.md. In short: `deal_id`,
`outcome` (won / lost / open), `value` and `created_at` are required;
`closed_at` is required for closed deals; `snapshot_at` (the moment the row
describes) defaults to `created_at`. The optional fields of the `Deal` message
follow (industry, region, stage, probability, stage_history, activity counts as
`activity_<kind>` columns or an `activity_counts` JSON object, ...). Every other
column is a custom field: a column whose values are all numbers is numeric,
all ISO dates is a date, anything else is categorical. A feature-spec file
(`SpecOverrides`) can force a column's type or exclude it.

Errors name the file, the line and the column. One row <-> one record is
`vectoros.core.deal_codec.row`; this module handles whole files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from vectoros.core.deal_codec.row import SCHEMA_COLUMNS, is_na, parse_time, record_from_row, record_to_row
from vectoros.core.deals import DealRecord, Outcome
from vectoros.core.features import SpecOverrides

_DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


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
        if is_na(value):
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
            record = record_from_row(row, custom)
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
