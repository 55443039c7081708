"""The rows the ledger stores and returns, and how their times are stored
(Unix seconds, REAL, UTC)."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime


class LedgerError(RuntimeError):
    """The ledger file cannot be used (for example written by a newer server)."""


def to_seconds(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def from_seconds(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value is not None else None


def now_utc() -> datetime:
    return datetime.fromtimestamp(time.time(), tz=UTC)


@dataclass(frozen=True)
class InsightSetRow:
    """One stored insight set. `deal_json`, `context_json` and `insights_json` are
    JSON text written by the insight engine; the ledger does not interpret them."""

    id: str
    workspace_id: str
    deal_id: str
    created_at: datetime
    generator: str
    requested_generator: str
    fallback_reason: str
    scorer_name: str
    scorer_version: int
    embedder_name: str
    embedder_version: int
    context_key: str | None
    win_probability: float
    model_win_probability: float
    reasoning: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    deal_json: str
    context_json: str
    insights_json: str


SET_COLUMNS = tuple(InsightSetRow.__dataclass_fields__)


def set_from_row(row: sqlite3.Row) -> InsightSetRow:
    values = dict(zip(SET_COLUMNS, row, strict=True))
    values["created_at"] = from_seconds(values["created_at"])
    return InsightSetRow(**values)


@dataclass(frozen=True)
class FeedbackRow:
    id: str
    insight_set_id: str
    insight_id: str
    rating: str
    acted_on: bool
    comment: str
    created_at: datetime


@dataclass(frozen=True)
class OutcomeRow:
    deal_id: str
    outcome: str
    closed_at: datetime | None
    final_value: float
    recorded_at: datetime


@dataclass(frozen=True)
class ScanState:
    """What a deal looked like at its last scan (for rules that compare)."""

    scanned_at: datetime
    rep_probability: float | None
    expected_close_at: datetime | None
    win_probability: float | None
    scorer_version: int | None


@dataclass(frozen=True)
class AlertRow:
    dedup_key: str
    deal_id: str
    rule: str
    priority: str
    title: str
    description: str
    evidence: dict[str, float]
    first_seen: datetime
    last_seen: datetime
    notified_at: datetime | None


@dataclass(frozen=True)
class QualityRow:
    """Quality of one (generator, scorer version) pair.

    `helpful_rate`: helpful ratings / all ratings. `action_rate`: feedback with
    acted_on / all feedback. `brier`: mean of (win probability shown - outcome)^2
    over insight sets whose deal has a recorded outcome (won = 1). None when there
    is nothing to average."""

    generator: str
    scorer_version: int
    insight_sets: int
    feedback: int
    helpful_rate: float | None
    action_rate: float | None
    outcomes: int
    brier: float | None
