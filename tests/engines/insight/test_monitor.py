"""ScanPipeline rules on hand-built deals (priorities at their thresholds, stable
dedup keys) and the PipelineMonitor over the real similarity engine (Qdrant Edge)
and ledger (`vectoros monitor` itself: tests/cli/test_ledger.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from server.engines.insight import HistoryIndex, StoredDeal, WorkspaceHistory, summarize_history
from server.engines.insight.monitor import (
    DEFAULT_STALE_DAYS,
    DealScan,
    PipelineMonitor,
    Priority,
    scan_deals,
)
from server.engines.similarity import SimilarityEngine
from server.ledger import Ledger, ScanState
from server.models.registry import ModelRegistry
from server.stores.edge import EdgeStore
from tests.support.fakes import Embedders, HashEmbedder
from vectoros.core.deals import DealRecord, Outcome, StageChange

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)


def deal(deal_id: str = "d1", **changes) -> DealRecord:
    record = DealRecord(
        deal_id=deal_id, workspace_id="acme", industry="software", stage="proposal", value=10_000,
        created_at=NOW - 20 * DAY, stage_entered_at=NOW - 1 * DAY, last_activity_at=NOW - 1 * DAY,
        expected_close_at=NOW + 30 * DAY, probability=0.5,
        stage_history=(StageChange("discovery", NOW - 20 * DAY), StageChange("proposal", NOW - 1 * DAY)),
    )
    return replace(record, **changes)


def won_history(gap_days: list[float], proposal_stays: list[float]) -> WorkspaceHistory:
    """Won deals with the given days per activity (60-day cycles) and proposal stays."""
    records = []
    for i, (gap, stay) in enumerate(zip(gap_days, proposal_stays, strict=True)):
        created = NOW - 200 * DAY
        records.append(DealRecord(
            deal_id=f"h{i}", industry="software", stage="proposal", created_at=created,
            closed_at=created + 60 * DAY, outcome=Outcome.WON, activity_counts={"emails": round(60 / gap)},
            stage_history=(StageChange("discovery", created), StageChange("proposal", created + (60 - stay) * DAY)),
        ))
    return summarize_history([StoredDeal.from_record(r) for r in records])


def rules_of(alerts, rule):
    return [a for a in alerts if a.rule == rule]


def test_stale_deal_priorities_against_the_norm():
    history = won_history([2, 3, 4, 5, 6, 6], [5, 6, 7, 8, 9, 10])
    norm = history.activity_gap_days.p75
    for ratio, priority in ((0.9, None), (1.5, Priority.LOW), (3, Priority.MEDIUM), (5, Priority.HIGH)):
        alerts = rules_of(scan_deals([DealScan(deal(last_activity_at=NOW - ratio * norm * DAY))], history, NOW),
                          "stale_deal")
        assert [a.priority for a in alerts] == ([priority] if priority else [])
        if alerts:
            assert alerts[0].evidence["norm_days"] == pytest.approx(norm, abs=0.01)
            assert alerts[0].evidence["ratio"] == pytest.approx(ratio, abs=0.01)
    # Without won deals to learn from, the default norm applies and says so.
    (alert,) = rules_of(scan_deals([DealScan(deal(last_activity_at=NOW - 20 * DAY))], WorkspaceHistory(), NOW),
                        "stale_deal")
    assert alert.evidence["norm_days"] == DEFAULT_STALE_DAYS and "default norm" in alert.description


def test_stage_stagnation_at_p75_and_p90():
    stays = [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    history = won_history([3] * len(stays), stays)
    p75, p90 = np.percentile(stays, [75, 90])
    cases = ((p75 - 0.5, None), (p75 + 0.5, Priority.MEDIUM), (p90 + 0.5, Priority.HIGH))
    for days_in, priority in cases:
        alerts = rules_of(scan_deals([DealScan(deal(stage_entered_at=NOW - days_in * DAY))], history, NOW),
                          "stage_stagnation")
        assert [a.priority for a in alerts] == ([priority] if priority else [])
    assert not rules_of(scan_deals([DealScan(deal(stage="legal", stage_entered_at=NOW - 99 * DAY))], history, NOW),
                        "stage_stagnation")


def test_drops_and_slips_compare_with_the_last_scan():
    before = ScanState(NOW - 7 * DAY, 0.6, NOW + 10 * DAY, 0.55, 1)
    history = WorkspaceHistory()

    def scan(**kwargs):
        return scan_deals([DealScan(**{"deal": deal(), "previous": before, **kwargs})], history, NOW)

    assert not rules_of(scan(deal=deal(probability=0.5)), "probability_drop")  # 10 points
    (drop,) = rules_of(scan(deal=deal(probability=0.4)), "probability_drop")
    assert drop.priority is Priority.MEDIUM and drop.evidence["drop"] == pytest.approx(0.2)
    (big,) = rules_of(scan(deal=deal(probability=0.25)), "probability_drop")
    assert big.priority is Priority.HIGH
    assert not rules_of(scan_deals([DealScan(deal(probability=0.1))], history, NOW), "probability_drop")

    (moved,) = rules_of(scan(deal=deal(expected_close_at=NOW + 40 * DAY)), "close_date_slippage")
    assert moved.priority is Priority.HIGH and moved.evidence["days_moved"] == pytest.approx(30)
    (passed,) = rules_of(scan(deal=deal(expected_close_at=NOW - 3 * DAY)), "close_date_slippage")
    assert passed.priority is Priority.HIGH
    (late,) = rules_of(scan(deal=deal(expected_close_at=NOW - 40 * DAY)), "close_date_slippage")
    assert late.priority is Priority.CRITICAL

    assert not rules_of(scan(win_probability=0.5, scorer_version=1), "score_drop")
    (score,) = rules_of(scan(win_probability=0.3, scorer_version=1), "score_drop")
    assert score.priority is Priority.HIGH and "v1" not in score.description
    (swap,) = rules_of(scan(win_probability=0.1, scorer_version=2), "score_drop")
    assert swap.priority is Priority.CRITICAL and "scorer v1 then v2" in swap.description


def test_dedup_keys_follow_the_condition():
    history = WorkspaceHistory()
    quiet = deal(last_activity_at=NOW - 20 * DAY)
    first = scan_deals([DealScan(quiet)], history, NOW)
    later = scan_deals([DealScan(quiet)], history, NOW + 2 * DAY)
    key = rules_of(first, "stale_deal")[0].dedup_key
    # Same silence, a bit longer, same priority: the same condition.
    assert rules_of(later, "stale_deal")[0].dedup_key == key
    # Escalated: a new alert.
    escalated = scan_deals([DealScan(quiet)], history, NOW + 20 * DAY)
    assert rules_of(escalated, "stale_deal")[0].priority is Priority.MEDIUM
    assert rules_of(escalated, "stale_deal")[0].dedup_key != key
    # New activity then silence again: a new condition. Another deal: another key.
    again = deal(last_activity_at=NOW - 16 * DAY + 3 * DAY)
    assert rules_of(scan_deals([DealScan(again)], history, NOW + 3 * DAY), "stale_deal")[0].dedup_key != key
    other = scan_deals([DealScan(replace(quiet, deal_id="d2"))], history, NOW)
    assert rules_of(other, "stale_deal")[0].dedup_key != key
    # Highest priority first.
    mixed = scan_deals([DealScan(quiet), DealScan(deal("d3", expected_close_at=NOW - 40 * DAY))], history, NOW)
    assert [a.priority for a in mixed] == sorted((a.priority for a in mixed),
                                                 key=list(Priority).index)


@pytest.fixture
def monitor_parts(tmp_path):
    store = EdgeStore(tmp_path / "vectors")
    similarity = SimilarityEngine(store, Embedders(HashEmbedder(1, 16, salted=False)))
    similarity.open()
    ledger = Ledger.in_dir(tmp_path / "server")
    history = HistoryIndex(similarity)
    # A real registry over an empty repository: no scorer, so score rules are skipped.
    monitor = PipelineMonitor(ModelRegistry(tmp_path / "models", {}), history, ledger)
    yield monitor, similarity, ledger
    history.close()
    similarity.close()
    store.close()
    ledger.close()


async def test_monitor_scans_stored_open_deals_and_remembers(monitor_parts):
    monitor, similarity, ledger = monitor_parts
    now = datetime.now(UTC)
    stored = [deal(f"o{i}", workspace_id="", last_activity_at=now - (5 + 10 * i) * DAY, created_at=now - 90 * DAY,
                   stage_entered_at=now - DAY, expected_close_at=now + 30 * DAY, probability=0.6) for i in range(4)]
    stored.append(deal("c1", workspace_id="", outcome=Outcome.WON, closed_at=now - DAY, created_at=now - 50 * DAY))
    await similarity.upsert("acme", stored)
    await similarity.upsert("globex", [replace(stored[3], deal_id="theirs")])
    result = await monitor.scan("acme", now=now)
    assert result.scanned_deals == 4
    assert {a.deal_id for a in rules_of(result.alerts, "stale_deal")} == {"o1", "o2", "o3"}
    assert ledger.scan_states("acme", ["o0"])["o0"].rep_probability == 0.6
    assert {a.dedup_key for a in ledger.alerts("acme")} == {a.dedup_key for a in result.alerts}
    # A week later the rep lowered a probability: the drop is seen against the stored scan.
    later = now + 7 * DAY
    sent = [replace(stored[0], workspace_id="acme", probability=0.3, last_activity_at=later - DAY)]
    again = await monitor.scan("acme", sent, now=later)
    (drop,) = rules_of(again.alerts, "probability_drop")
    assert drop.deal_id == "o0" and drop.evidence["drop"] == pytest.approx(0.3)
