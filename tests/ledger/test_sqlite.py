"""The SQLite ledger on disk: WAL, migrations, idempotent feedback and outcomes,
workspace isolation, alert notification windows, quality figures, and a write
that survives kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from server.ledger import MIGRATIONS, AlertRow, InsightSetRow, Ledger, LedgerError, ScanState

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def insight_set(set_id: str, workspace: str = "acme", deal: str = "d1", **changes) -> InsightSetRow:
    row = InsightSetRow(
        id=set_id,
        workspace_id=workspace,
        deal_id=deal,
        created_at=T0,
        generator="rules",
        requested_generator="rules",
        fallback_reason="",
        scorer_name="scorer",
        scorer_version=1,
        embedder_name="embedder",
        embedder_version=1,
        context_key=f"key-{set_id}",
        win_probability=0.5,
        model_win_probability=0.5,
        reasoning="because",
        input_tokens=0,
        output_tokens=0,
        latency_ms=1.0,
        deal_json="{}",
        context_json="{}",
        insights_json=json.dumps([{"id": "i1"}]),
    )
    return replace(row, **changes)


@pytest.fixture
def ledger(tmp_path):
    made = Ledger.in_dir(tmp_path)
    yield made
    made.close()


def test_wal_schema_and_reopen(tmp_path):
    ledger = Ledger.in_dir(tmp_path)
    ledger.add_insight_set(insight_set("s1"))
    assert ledger.schema_version == MIGRATIONS[-1][0]
    ledger.close()
    raw = sqlite3.connect(tmp_path / "ledger.sqlite")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"insight_sets", "feedback", "outcomes", "alerts", "deal_scans"} <= tables
    raw.close()
    again = Ledger.in_dir(tmp_path)
    assert again.insight_set("acme", "s1") == insight_set("s1")
    again.close()


def test_migration_runs_once_and_keeps_data(tmp_path):
    Ledger.in_dir(tmp_path).close()
    first = Ledger.in_dir(tmp_path)
    first.add_insight_set(insight_set("s1"))
    first.close()
    upgraded = (*MIGRATIONS, (2, "ALTER TABLE feedback ADD COLUMN source TEXT NOT NULL DEFAULT 'api'"))
    ledger = Ledger(tmp_path / "ledger.sqlite", migrations=upgraded)
    assert ledger.schema_version == 2
    assert ledger.insight_set("acme", "s1") is not None
    ledger.close()
    # Reopening applies nothing twice (ALTER TABLE would fail on a second run).
    assert Ledger(tmp_path / "ledger.sqlite", migrations=upgraded).schema_version == 2
    # An older server refuses the newer file instead of guessing.
    with pytest.raises(LedgerError, match="newer"):
        Ledger(tmp_path / "ledger.sqlite")


def test_feedback_is_idempotent_by_key(ledger):
    ledger.add_insight_set(insight_set("s1"))
    first = ledger.add_feedback("acme", "s1", "i1", "helpful", True, "nice", "k1", T0)
    again = ledger.add_feedback("acme", "s1", "i1", "helpful", True, "nice", "k1", T0)
    assert first[1:] == (False, True)
    assert again == (first[0], True, True)
    changed = ledger.add_feedback("acme", "s1", "i1", "incorrect", False, "", "k1", T0)
    assert changed == (first[0], True, False)
    assert [f.rating for f in ledger.feedback_for("acme", ["s1"])["s1"]] == ["helpful"]
    # The same key in another workspace is another feedback.
    ledger.add_insight_set(insight_set("s2", workspace="globex"))
    other = ledger.add_feedback("globex", "s2", "", "not_helpful", False, "", "k1", T0)
    assert other[1] is False and other[0] != first[0]
    with pytest.raises(ValueError):
        ledger.add_feedback("acme", "s1", "", "great", False, "", "k9", T0)


def test_outcome_is_idempotent_and_corrections_replace(ledger):
    closed = T0 + timedelta(days=3)
    assert ledger.record_outcome("acme", "d1", "won", closed, 1000.0, T0) is False
    assert ledger.record_outcome("acme", "d1", "won", closed, 1000.0, T0) is True
    assert ledger.record_outcome("acme", "d1", "lost", closed, 0.0, T0) is False
    assert ledger.outcome("acme", "d1").outcome == "lost"
    assert ledger.outcome("globex", "d1") is None
    with pytest.raises(ValueError):
        ledger.record_outcome("acme", "d2", "open", None, 0.0, T0)


def test_workspaces_are_isolated(ledger):
    ledger.add_insight_set(insight_set("s1", workspace="acme"))
    ledger.add_feedback("acme", "s1", "", "helpful", False, "", "k", T0)
    alert = AlertRow("key-1", "d1", "stale_deal", "high", "t", "d", {"days": 3.0}, T0, T0, None)
    ledger.record_alerts("acme", [alert])
    assert ledger.insight_set("globex", "s1") is None
    assert ledger.feedback_for("globex", ["s1"]) == {}
    assert ledger.alerts("globex") == []
    assert ledger.claim_notifications("globex", ["key-1"], 3600, T0) == []
    assert list(ledger.insight_sets("globex")) == []
    assert [a.dedup_key for a in ledger.alerts("acme")] == ["key-1"]


def test_alert_notifications_respect_the_window(ledger):
    alert = AlertRow("key-1", "d1", "stale_deal", "high", "t", "d", {"days": 3.0}, T0, T0, None)
    ledger.record_alerts("acme", [alert])
    assert ledger.claim_notifications("acme", ["key-1", "unknown"], 3600, T0) == ["key-1"]
    assert ledger.claim_notifications("acme", ["key-1"], 3600, T0 + timedelta(minutes=30)) == []
    # Seen again by a later scan: first_seen stays, notification state too.
    ledger.record_alerts("acme", [replace(alert, last_seen=T0 + timedelta(minutes=40), priority="critical")])
    (stored,) = ledger.alerts("acme")
    assert (stored.first_seen, stored.priority, stored.notified_at) == (T0, "critical", T0)
    assert ledger.claim_notifications("acme", ["key-1"], 3600, T0 + timedelta(minutes=61)) == ["key-1"]


def test_scan_state_round_trip(ledger):
    state = ScanState(T0, 0.4, T0 + timedelta(days=9), 0.31, 2)
    ledger.save_scan("acme", {"d1": state}, [])
    assert ledger.scan_states("acme", ["d1", "d2"]) == {"d1": state}
    assert ledger.scan_states("globex", ["d1"]) == {}


def test_insight_sets_page_in_time_order(ledger):
    for i in range(7):
        ledger.add_insight_set(insight_set(f"s{i}", created_at=T0 + timedelta(minutes=i // 2)))
    listed = [row.id for row in ledger.insight_sets("acme", batch=2)]
    assert listed == [f"s{i}" for i in range(7)]
    assert [row.id for row in ledger.insight_sets("acme", since=T0 + timedelta(minutes=2), batch=2)] == [
        "s4", "s5", "s6"
    ]


def test_quality_figures(ledger):
    # rules / scorer v1: two sets shown at 0.8 and 0.3; the deal of the first was won,
    # of the second lost -> Brier ((1 - 0.8)^2 + 0.3^2) / 2.
    ledger.add_insight_set(insight_set("a", deal="d1", win_probability=0.8))
    ledger.add_insight_set(insight_set("b", deal="d2", win_probability=0.3))
    ledger.add_insight_set(insight_set("c", deal="d3", win_probability=0.6, generator="claude:m", scorer_version=2))
    ledger.record_outcome("acme", "d1", "won", T0, 10.0, T0)
    ledger.record_outcome("acme", "d2", "lost", T0, 0.0, T0)
    for key, (set_id, rating, acted) in enumerate(
        [("a", "helpful", True), ("a", "not_helpful", False), ("b", "helpful", False), ("c", "incorrect", True)]
    ):
        ledger.add_feedback("acme", set_id, "", rating, acted, "", str(key), T0)
    # Another workspace's data never enters these figures.
    ledger.add_insight_set(insight_set("z", workspace="globex", deal="d1", win_probability=0.0))
    ledger.add_feedback("globex", "z", "", "incorrect", True, "", "z", T0)
    rows = {(r.generator, r.scorer_version): r for r in ledger.quality("acme")}
    rules = rows[("rules", 1)]
    assert (rules.insight_sets, rules.feedback, rules.outcomes) == (2, 3, 2)
    assert rules.helpful_rate == pytest.approx(2 / 3)
    assert rules.action_rate == pytest.approx(1 / 3)
    assert rules.brier == pytest.approx(((1 - 0.8) ** 2 + 0.3**2) / 2)
    claude = rows[("claude:m", 2)]
    assert (claude.helpful_rate, claude.action_rate, claude.outcomes, claude.brier) == (0.0, 1.0, 0, None)
    assert {(r.generator, r.insight_sets) for r in ledger.quality()} >= {("rules", 3)}


def test_feedback_survives_kill_9(tmp_path):
    ledger = Ledger.in_dir(tmp_path)
    ledger.add_insight_set(insight_set("s1"))
    ledger.close()
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        from datetime import UTC, datetime
        from server.ledger import Ledger
        ledger = Ledger.in_dir({str(tmp_path)!r})
        now = datetime.now(UTC)
        ledger.add_feedback("acme", "s1", "", "helpful", True, "kept", "k-kill", now)
        ledger.record_outcome("acme", "d1", "won", now, 5.0, now)
        print("acknowledged", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "acknowledged"
    assert result.returncode == -signal.SIGKILL
    assert os.path.exists(tmp_path / "ledger.sqlite-wal")
    reopened = Ledger.in_dir(tmp_path)
    assert [f.comment for f in reopened.feedback_for("acme", ["s1"])["s1"]] == ["kept"]
    assert reopened.outcome("acme", "d1").outcome == "won"
    reopened.close()
