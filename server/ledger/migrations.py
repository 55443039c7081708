"""The ledger's schema, as versioned migrations applied in order at open."""

from __future__ import annotations

# (version, statements). Append only: a released migration is never edited.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE insight_sets (
            id TEXT PRIMARY KEY,
            workspace_id TEXT NOT NULL,
            deal_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            generator TEXT NOT NULL,
            requested_generator TEXT NOT NULL,
            fallback_reason TEXT NOT NULL,
            scorer_name TEXT NOT NULL,
            scorer_version INTEGER NOT NULL,
            embedder_name TEXT NOT NULL,
            embedder_version INTEGER NOT NULL,
            context_key TEXT,
            win_probability REAL NOT NULL,
            model_win_probability REAL NOT NULL,
            reasoning TEXT NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            latency_ms REAL NOT NULL,
            deal_json TEXT NOT NULL,
            context_json TEXT NOT NULL,
            insights_json TEXT NOT NULL
        );
        CREATE INDEX insight_sets_by_deal ON insight_sets (workspace_id, deal_id, created_at);
        CREATE INDEX insight_sets_by_key ON insight_sets (workspace_id, context_key, created_at);
        CREATE INDEX insight_sets_by_time ON insight_sets (workspace_id, created_at);

        CREATE TABLE feedback (
            id TEXT PRIMARY KEY,
            workspace_id TEXT NOT NULL,
            insight_set_id TEXT NOT NULL REFERENCES insight_sets (id),
            insight_id TEXT NOT NULL,
            rating TEXT NOT NULL CHECK (rating IN ('helpful', 'not_helpful', 'incorrect')),
            acted_on INTEGER NOT NULL,
            comment TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (workspace_id, idempotency_key)
        );
        CREATE INDEX feedback_by_set ON feedback (insight_set_id);

        CREATE TABLE outcomes (
            workspace_id TEXT NOT NULL,
            deal_id TEXT NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ('won', 'lost')),
            closed_at REAL,
            final_value REAL NOT NULL,
            recorded_at REAL NOT NULL,
            PRIMARY KEY (workspace_id, deal_id)
        );

        CREATE TABLE alerts (
            workspace_id TEXT NOT NULL,
            dedup_key TEXT NOT NULL,
            deal_id TEXT NOT NULL,
            rule TEXT NOT NULL,
            priority TEXT NOT NULL,
            title TEXT NOT NULL,
            description TEXT NOT NULL,
            evidence_json TEXT NOT NULL,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            notified_at REAL,
            PRIMARY KEY (workspace_id, dedup_key)
        );

        CREATE TABLE deal_scans (
            workspace_id TEXT NOT NULL,
            deal_id TEXT NOT NULL,
            scanned_at REAL NOT NULL,
            rep_probability REAL,
            expected_close_at REAL,
            win_probability REAL,
            scorer_version INTEGER,
            PRIMARY KEY (workspace_id, deal_id)
        );
        """,
    ),
)


def migration_statements(script: str) -> list[str]:
    """Split a migration script on semicolons (our scripts hold no semicolons in
    literals); `executescript` would commit the open transaction first."""
    return [s.strip() for s in script.split(";") if s.strip()]
