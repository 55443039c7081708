"""The insight ledger: `sqlite` (the Ledger over one SQLite file), `rows` (what it stores
and returns), `migrations` (its versioned schema)."""

from server.ledger.migrations import MIGRATIONS
from server.ledger.rows import (
    AlertRow,
    FeedbackRow,
    InsightSetRow,
    LedgerError,
    OutcomeRow,
    QualityRow,
    ScanState,
    now_utc,
)
from server.ledger.sqlite import CLOSED_OUTCOMES, LEDGER_FILE, RATINGS, Ledger

__all__ = [
    "CLOSED_OUTCOMES",
    "LEDGER_FILE",
    "MIGRATIONS",
    "RATINGS",
    "AlertRow",
    "FeedbackRow",
    "InsightSetRow",
    "Ledger",
    "LedgerError",
    "OutcomeRow",
    "QualityRow",
    "ScanState",
    "now_utc",
]
