"""The insight ledger: generated insight sets, feedback, outcomes, pipeline alerts
and scan state, in one SQLite file under ``--data-dir`` (``ledger.sqlite``).

Why SQLite: one process writes (the server), a few read (`vectoros export`,
`vectoros quality`, `vectoros monitor`), the data is relational and small, and
WAL mode lets readers run while the server writes.

Durability. Feedback and outcomes are what a rep typed in and cannot be
regenerated: their transactions run with ``synchronous=FULL`` (the WAL is
fsynced before the call returns, ~10 ms here). Insight sets, alerts and scan
state can be recomputed: they commit with ``synchronous=NORMAL`` (written to the
WAL before returning, so they survive a killed process, but a power loss may
drop the last few), which keeps a GenerateInsights call from paying an fsync.

Schema and migrations. ``PRAGMA user_version`` holds the schema version; at open
every migration above it runs in order, each in its own transaction. A file
written by a newer server (a version above the newest known migration) is
refused rather than guessed at.

Isolation. Every query that reads or changes tenant data has ``workspace_id =
?`` in its WHERE clause (or key), so an id of another workspace reads as unknown.

Times are stored as Unix seconds (REAL, UTC).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from server.ledger.migrations import MIGRATIONS, migration_statements
from server.ledger.rows import (
    SET_COLUMNS,
    AlertRow,
    FeedbackRow,
    InsightSetRow,
    LedgerError,
    OutcomeRow,
    QualityRow,
    ScanState,
    from_seconds,
    set_from_row,
    to_seconds,
)

LEDGER_FILE = "ledger.sqlite"
RATINGS = ("helpful", "not_helpful", "incorrect")
CLOSED_OUTCOMES = ("won", "lost")


class Ledger:
    """The SQLite ledger. Thread-safe (one connection behind a lock); every call
    blocks, so async callers run it in a worker thread."""

    def __init__(self, path: str | Path, *, migrations: Sequence[tuple[int, str]] = MIGRATIONS) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            self._db.execute("PRAGMA busy_timeout = 10000")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise LedgerError(f"{self.path}: cannot switch to WAL mode (got {mode})")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self.schema_version = self._migrate(migrations)
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def in_dir(cls, data_dir: str | Path) -> Ledger:
        return cls(Path(data_dir) / LEDGER_FILE)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self, migrations: Sequence[tuple[int, str]]) -> int:
        versions = [v for v, _ in migrations]
        if versions != sorted(set(versions)) or (versions and versions[0] < 1):
            raise ValueError("migrations must have increasing versions from 1")
        current = self._db.execute("PRAGMA user_version").fetchone()[0]
        newest = versions[-1] if versions else 0
        if current > newest:
            raise LedgerError(
                f"{self.path}: schema version {current} is newer than this server knows ({newest}); "
                "run a newer server or restore a matching backup"
            )
        for version, script in migrations:
            if version <= current:
                continue
            # BEGIN IMMEDIATE takes the write lock, so two processes opening an old
            # file at once migrate it once: the second re-reads the version.
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute("PRAGMA user_version").fetchone()[0] >= version:
                    self._db.execute("ROLLBACK")
                    continue
                for statement in migration_statements(script):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {int(version)}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _write(self, statements, *, durable: bool = False):
        """Run `statements(cursor)` in one write transaction and return its result.
        `durable`: fsync the WAL before returning (see the module docstring)."""
        with self._lock:
            db = self._db
            if durable:
                db.execute("PRAGMA synchronous = FULL")
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = statements(db)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            finally:
                if durable:
                    db.execute("PRAGMA synchronous = NORMAL")
            return result

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # --- insight sets ---

    def add_insight_set(self, row: InsightSetRow) -> None:
        values = [getattr(row, name) for name in SET_COLUMNS]
        values[SET_COLUMNS.index("created_at")] = row.created_at.timestamp()
        placeholders = ", ".join("?" * len(SET_COLUMNS))
        self._write(
            lambda db: db.execute(
                f"INSERT INTO insight_sets ({', '.join(SET_COLUMNS)}) VALUES ({placeholders})", values
            )
        )

    def insight_set(self, workspace_id: str, insight_set_id: str) -> InsightSetRow | None:
        rows = self._read(
            f"SELECT {', '.join(SET_COLUMNS)} FROM insight_sets WHERE workspace_id = ? AND id = ?",
            (workspace_id, insight_set_id),
        )
        return set_from_row(rows[0]) if rows else None

    def cached_insight_set(self, workspace_id: str, context_key: str, not_before: datetime) -> InsightSetRow | None:
        """The newest set stored under `context_key` at or after `not_before`."""
        rows = self._read(
            f"SELECT {', '.join(SET_COLUMNS)} FROM insight_sets "
            "WHERE workspace_id = ? AND context_key = ? AND created_at >= ? ORDER BY created_at DESC LIMIT 1",
            (workspace_id, context_key, not_before.timestamp()),
        )
        return set_from_row(rows[0]) if rows else None

    def latest_insight_set(
        self, workspace_id: str, deal_id: str, before: datetime | None = None
    ) -> InsightSetRow | None:
        """The deal's newest stored set (created before `before`, if given)."""
        rows = self._read(
            f"SELECT {', '.join(SET_COLUMNS)} FROM insight_sets WHERE workspace_id = ? AND deal_id = ? "
            "AND created_at < ? ORDER BY created_at DESC LIMIT 1",
            (workspace_id, deal_id, before.timestamp() if before else float("inf")),
        )
        return set_from_row(rows[0]) if rows else None

    def insight_sets(
        self, workspace_id: str, since: datetime | None = None, batch: int = 500
    ) -> Iterator[InsightSetRow]:
        """The workspace's sets created at or after `since`, oldest first, read `batch`
        at a time (the lock is not held between batches, so a long export does not
        stall writers)."""
        columns = ", ".join(SET_COLUMNS)
        created = SET_COLUMNS.index("created_at")
        rows = self._read(
            f"SELECT {columns} FROM insight_sets WHERE workspace_id = ? AND created_at >= ? "
            "ORDER BY created_at, id LIMIT ?",
            (workspace_id, since.timestamp() if since else float("-inf"), batch),
        )
        while rows:
            for row in rows:
                yield set_from_row(row)
            if len(rows) < batch:
                return
            last_time, last_id = rows[-1][created], rows[-1][0]
            rows = self._read(
                f"SELECT {columns} FROM insight_sets WHERE workspace_id = ? "
                "AND (created_at > ? OR (created_at = ? AND id > ?)) ORDER BY created_at, id LIMIT ?",
                (workspace_id, last_time, last_time, last_id, batch),
            )

    # --- feedback ---

    def add_feedback(
        self,
        workspace_id: str,
        insight_set_id: str,
        insight_id: str,
        rating: str,
        acted_on: bool,
        comment: str,
        idempotency_key: str,
        now: datetime,
    ) -> tuple[str, bool, bool]:
        """Store feedback once per (workspace, idempotency key). Returns (feedback id,
        duplicate, same): `duplicate` when the key was already recorded, `same` when
        that earlier feedback says the same thing."""
        if rating not in RATINGS:
            raise ValueError(f"rating: must be one of {RATINGS}")

        def write(db: sqlite3.Connection) -> tuple[str, bool, bool]:
            found = db.execute(
                "SELECT id, insight_set_id, insight_id, rating, acted_on, comment FROM feedback "
                "WHERE workspace_id = ? AND idempotency_key = ?",
                (workspace_id, idempotency_key),
            ).fetchone()
            if found is not None:
                same = tuple(found[1:]) == (insight_set_id, insight_id, rating, int(acted_on), comment)
                return found[0], True, same
            feedback_id = uuid.uuid4().hex
            db.execute(
                "INSERT INTO feedback (id, workspace_id, insight_set_id, insight_id, rating, acted_on, comment, "
                "idempotency_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (feedback_id, workspace_id, insight_set_id, insight_id, rating, int(acted_on), comment,
                 idempotency_key, now.timestamp()),
            )
            return feedback_id, False, True

        return self._write(write, durable=True)

    def feedback_for(self, workspace_id: str, insight_set_ids: Sequence[str]) -> dict[str, list[FeedbackRow]]:
        found: dict[str, list[FeedbackRow]] = {}
        for start in range(0, len(insight_set_ids), 500):
            chunk = list(insight_set_ids[start : start + 500])
            rows = self._read(
                "SELECT id, insight_set_id, insight_id, rating, acted_on, comment, created_at FROM feedback "
                f"WHERE workspace_id = ? AND insight_set_id IN ({', '.join('?' * len(chunk))}) ORDER BY created_at",
                (workspace_id, *chunk),
            )
            for row in rows:
                found.setdefault(row[1], []).append(
                    FeedbackRow(row[0], row[1], row[2], row[3], bool(row[4]), row[5], from_seconds(row[6]))
                )
        return found

    # --- outcomes ---

    def record_outcome(
        self, workspace_id: str, deal_id: str, outcome: str, closed_at: datetime | None, final_value: float,
        now: datetime,
    ) -> bool:
        """Store how a deal ended. Returns True when exactly this outcome was already
        recorded (nothing changes); a different outcome replaces the old one (a
        correction)."""
        if outcome not in CLOSED_OUTCOMES:
            raise ValueError(f"outcome: must be one of {CLOSED_OUTCOMES}")
        closed = to_seconds(closed_at)

        def write(db: sqlite3.Connection) -> bool:
            found = db.execute(
                "SELECT outcome, closed_at, final_value FROM outcomes WHERE workspace_id = ? AND deal_id = ?",
                (workspace_id, deal_id),
            ).fetchone()
            if found is not None and tuple(found) == (outcome, closed, final_value):
                return True
            db.execute(
                "INSERT INTO outcomes (workspace_id, deal_id, outcome, closed_at, final_value, recorded_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id, deal_id) DO UPDATE SET "
                "outcome = excluded.outcome, closed_at = excluded.closed_at, final_value = excluded.final_value, "
                "recorded_at = excluded.recorded_at",
                (workspace_id, deal_id, outcome, closed, final_value, now.timestamp()),
            )
            return False

        return self._write(write, durable=True)

    def outcome(self, workspace_id: str, deal_id: str) -> OutcomeRow | None:
        return self.outcomes(workspace_id, [deal_id]).get(deal_id)

    def outcomes(self, workspace_id: str, deal_ids: Sequence[str]) -> dict[str, OutcomeRow]:
        rows = self._rows_by_deal("deal_id, outcome, closed_at, final_value, recorded_at", "outcomes",
                                  workspace_id, deal_ids)
        return {row[0]: OutcomeRow(row[0], row[1], from_seconds(row[2]), row[3], from_seconds(row[4])) for row in rows}

    def _rows_by_deal(self, columns: str, table: str, workspace_id: str, deal_ids: Sequence[str]) -> list[tuple]:
        """`SELECT columns FROM table` for a workspace's deal ids, 500 ids per query
        (SQLite caps the number of bound parameters)."""
        rows: list[tuple] = []
        unique = list(dict.fromkeys(deal_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            rows.extend(self._read(
                f"SELECT {columns} FROM {table} WHERE workspace_id = ? AND deal_id IN ({', '.join('?' * len(chunk))})",
                (workspace_id, *chunk),
            ))
        return rows

    # --- scans and alerts ---

    def scan_states(self, workspace_id: str, deal_ids: Sequence[str]) -> dict[str, ScanState]:
        rows = self._rows_by_deal(
            "deal_id, scanned_at, rep_probability, expected_close_at, win_probability, scorer_version",
            "deal_scans", workspace_id, deal_ids,
        )
        return {row[0]: ScanState(from_seconds(row[1]), row[2], from_seconds(row[3]), row[4], row[5]) for row in rows}

    def save_scan(
        self,
        workspace_id: str,
        states: dict[str, ScanState],
        alerts: Sequence[AlertRow],
    ) -> None:
        """Replace the scan state of the scanned deals and upsert the alerts seen
        (first_seen stays; last_seen, priority and text follow the newest scan)."""

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO deal_scans (workspace_id, deal_id, scanned_at, rep_probability, expected_close_at, "
                "win_probability, scorer_version) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (workspace_id, deal_id) DO UPDATE SET scanned_at = excluded.scanned_at, "
                "rep_probability = excluded.rep_probability, expected_close_at = excluded.expected_close_at, "
                "win_probability = excluded.win_probability, scorer_version = excluded.scorer_version",
                [
                    (workspace_id, deal_id, s.scanned_at.timestamp(), s.rep_probability,
                     to_seconds(s.expected_close_at), s.win_probability, s.scorer_version)
                    for deal_id, s in states.items()
                ],
            )
            _upsert_alerts(db, workspace_id, alerts)

        self._write(write)

    def record_alerts(self, workspace_id: str, alerts: Sequence[AlertRow]) -> None:
        self._write(lambda db: _upsert_alerts(db, workspace_id, alerts))

    def claim_notifications(
        self, workspace_id: str, dedup_keys: Sequence[str], window_seconds: float, now: datetime
    ) -> list[str]:
        """Of the stored alerts `dedup_keys`, those not notified within the last
        `window_seconds`; they are marked notified now. Unknown keys are skipped."""

        def write(db: sqlite3.Connection) -> list[str]:
            claimed = []
            cutoff = now.timestamp() - window_seconds
            for key in dict.fromkeys(dedup_keys):
                row = db.execute(
                    "SELECT notified_at FROM alerts WHERE workspace_id = ? AND dedup_key = ?", (workspace_id, key)
                ).fetchone()
                if row is None or (row[0] is not None and row[0] > cutoff):
                    continue
                db.execute(
                    "UPDATE alerts SET notified_at = ? WHERE workspace_id = ? AND dedup_key = ?",
                    (now.timestamp(), workspace_id, key),
                )
                claimed.append(key)
            return claimed

        return self._write(write)

    def alerts(self, workspace_id: str) -> list[AlertRow]:
        rows = self._read(
            "SELECT dedup_key, deal_id, rule, priority, title, description, evidence_json, first_seen, last_seen, "
            "notified_at FROM alerts WHERE workspace_id = ? ORDER BY last_seen DESC, dedup_key",
            (workspace_id,),
        )
        return [
            AlertRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), from_seconds(r[7]), from_seconds(r[8]),
                     from_seconds(r[9]))
            for r in rows
        ]

    # --- quality ---

    def quality(self, workspace_id: str | None = None) -> list[QualityRow]:
        """Helpful rate, action rate and Brier score per (generator, scorer version),
        for one workspace or all of them (an operator's view, never a request's)."""
        where, params = ("WHERE s.workspace_id = ?", (workspace_id,)) if workspace_id is not None else ("", ())
        sets = self._read(
            f"SELECT s.generator, s.scorer_version, COUNT(*), "
            "SUM(CASE WHEN o.outcome IS NOT NULL THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN o.outcome IS NULL THEN 0 "
            "WHEN o.outcome = 'won' THEN (1.0 - s.win_probability) * (1.0 - s.win_probability) "
            "ELSE s.win_probability * s.win_probability END) "
            "FROM insight_sets s LEFT JOIN outcomes o "
            "ON o.workspace_id = s.workspace_id AND o.deal_id = s.deal_id "
            f"{where} GROUP BY s.generator, s.scorer_version ORDER BY s.generator, s.scorer_version",
            params,
        )
        feedback = self._read(
            "SELECT s.generator, s.scorer_version, COUNT(*), "
            "SUM(CASE WHEN f.rating = 'helpful' THEN 1 ELSE 0 END), SUM(f.acted_on) "
            "FROM feedback f JOIN insight_sets s ON s.id = f.insight_set_id AND s.workspace_id = f.workspace_id "
            f"{where} GROUP BY s.generator, s.scorer_version",
            params,
        )
        by_pair = {(r[0], r[1]): r[2:] for r in feedback}
        result = []
        for generator, version, count, outcomes, squared in sets:
            rated, helpful, acted = by_pair.get((generator, version), (0, 0, 0))
            result.append(
                QualityRow(
                    generator=generator,
                    scorer_version=version,
                    insight_sets=count,
                    feedback=rated,
                    helpful_rate=helpful / rated if rated else None,
                    action_rate=acted / rated if rated else None,
                    outcomes=outcomes,
                    brier=squared / outcomes if outcomes else None,
                )
            )
        return result


def _upsert_alerts(db: sqlite3.Connection, workspace_id: str, alerts: Sequence[AlertRow]) -> None:
    db.executemany(
        "INSERT INTO alerts (workspace_id, dedup_key, deal_id, rule, priority, title, description, evidence_json, "
        "first_seen, last_seen, notified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL) "
        "ON CONFLICT (workspace_id, dedup_key) DO UPDATE SET priority = excluded.priority, "
        "title = excluded.title, description = excluded.description, evidence_json = excluded.evidence_json, "
        "last_seen = excluded.last_seen",
        [
            (workspace_id, a.dedup_key, a.deal_id, a.rule, a.priority, a.title, a.description,
             json.dumps(a.evidence, sort_keys=True), a.first_seen.timestamp(), a.last_seen.timestamp())
            for a in alerts
        ],
    )
