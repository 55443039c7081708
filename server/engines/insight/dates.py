"""Durations in days and UTC timestamps as the context and the export write them."""

from __future__ import annotations

from datetime import UTC, datetime

DAY_SECONDS = 86_400.0


def days_between(later: datetime | None, earlier: datetime | None) -> float | None:
    """Days from `earlier` to `later` (negative when `later` is earlier); None when either is unknown."""
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds() / DAY_SECONDS


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a "Z" suffix; None stays None."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None
