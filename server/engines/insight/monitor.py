"""ScanPipeline: alerts on a workspace's open deals.

Rules (each alert carries the numbers it used as `evidence`):

- `stale_deal`: days since the last activity (or since creation, when none was
  logged) above the workspace norm, the 75th percentile of won deals' days per
  activity (see `WorkspaceHistory`); `DEFAULT_STALE_DAYS` when fewer than
  `MIN_SAMPLE` won deals teach a norm. Low above the norm, medium above twice
  it, high above four times.
- `stage_stagnation`: days in the current stage above the workspace's 75th
  percentile for that stage (medium), above the 90th (high). No alert without
  enough completed stays to know the percentiles.
- `probability_drop`: the rep's probability fell by `PROBABILITY_DROP` or more
  since the last scan (medium; high from twice that).
- `close_date_slippage`: the expected close date has passed (high; critical when
  more than `LONG_OVERDUE_DAYS` ago: the forecast has been wrong for a month), or
  moved later since the last scan (medium; high from `LONG_SLIP_DAYS`).
- `score_drop`: the scorer's win probability fell by `SCORE_DROP` or more since
  the last scan (medium; high from 0.2; critical from 0.35). Skipped when no
  scorer is loaded.

The dedup key is stable for one condition and changes when the condition
does: it hashes the deal id, the rule and what identifies the condition (the
date of the last activity and the priority for a stale deal, the stage and
when it was entered for stagnation, the two values compared for drops and
slips). So rescanning an unchanged pipeline gives the same keys, a new activity
ends a "stale" condition, and an escalation to a higher priority is a new
alert. `vectoros monitor` uses the keys not to repeat an alert within a window.

`scan_deals` is a pure function; `PipelineMonitor` loads the deals, scores them,
reads the previous scan from the ledger and stores the new one with the alerts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

from server.engines.insight.history import WorkspaceHistory, stat_key
from server.engines.insight.history_index import HistoryIndex
from server.engines.scoring import ScoringEngine
from server.ledger import AlertRow, Ledger, ScanState
from vectoros.core.deals import DealRecord, Outcome
from vectoros.core.errors import InvalidInput, NotFound, Unavailable

DEFAULT_STALE_DAYS = 14.0
PROBABILITY_DROP = 0.15
SCORE_DROP = 0.1
LONG_OVERDUE_DAYS = 30.0
LONG_SLIP_DAYS = 30.0
MAX_SCAN_DEALS = 1000
# Deals scored per ScoringEngine call when a scan covers a stored workspace.
SCORE_CHUNK = 1000
_DAY = 86_400.0


class Priority(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


_RANK = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.MEDIUM: 2, Priority.LOW: 3}


@dataclass(frozen=True)
class Alert:
    dedup_key: str
    deal_id: str
    rule: str
    priority: Priority
    title: str
    description: str
    evidence: dict[str, float]


@dataclass(frozen=True)
class DealScan:
    """One open deal to check: its snapshot, the scorer's probability now (None
    without a scorer) and what the previous scan saw (None on the first)."""

    deal: DealRecord
    win_probability: float | None = None
    scorer_version: int | None = None
    previous: ScanState | None = None


@dataclass(frozen=True)
class ScanResult:
    alerts: list[Alert]
    scanned_deals: int


def dedup_key(rule: str, deal_id: str, *condition: object) -> str:
    digest = hashlib.sha256(json.dumps([deal_id, rule, *condition], default=str).encode()).hexdigest()
    return f"{rule}:{digest[:20]}"


def _days(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds() / _DAY


def _date(value: datetime | None) -> str:
    return value.date().isoformat() if value is not None else "never"


def _stage_entered(deal: DealRecord) -> datetime | None:
    if deal.stage_entered_at is not None:
        return deal.stage_entered_at
    same = [c.entered_at for c in deal.stage_history if stat_key(c.stage) == stat_key(deal.stage)]
    return max(same) if same else None


# --- rules ----------------------------------------------------------------------------


def stale_deal(scan: DealScan, history: WorkspaceHistory, now: datetime) -> Alert | None:
    deal = scan.deal
    norm_stat = history.activity_gap_days
    learned = norm_stat is not None and norm_stat.usable() and norm_stat.p75 > 0
    norm = norm_stat.p75 if learned else DEFAULT_STALE_DAYS
    silent = _days(now, deal.last_activity_at)
    since = f"since the last activity on {_date(deal.last_activity_at)}"
    if silent is None:
        silent, since = _days(now, deal.created_at), "since creation, with no activity logged"
    if silent is None or silent <= norm:
        return None
    ratio = silent / norm
    priority = Priority.HIGH if ratio > 4 else Priority.MEDIUM if ratio > 2 else Priority.LOW
    source = (
        f"the workspace norm of {norm:.1f} days (75th percentile of {norm_stat.count} won deals' days per activity)"
        if learned else f"the default norm of {norm:.0f} days (too few won deals to learn one)"
    )
    return Alert(
        dedup_key=dedup_key("stale_deal", deal.deal_id, _date(deal.last_activity_at), priority.value),
        deal_id=deal.deal_id,
        rule="stale_deal",
        priority=priority,
        title=f"No activity for {silent:.0f} days",
        description=f"{silent:.1f} days {since}: {ratio:.1f}x {source}.",
        evidence={"days_since_last_activity": round(silent, 2), "norm_days": round(norm, 2),
                  "ratio": round(ratio, 3)},
    )


def stage_stagnation(scan: DealScan, history: WorkspaceHistory, now: datetime) -> Alert | None:
    deal = scan.deal
    stat = history.days_in_stage.get(stat_key(deal.stage))
    entered = _stage_entered(deal)
    in_stage = _days(now, entered)
    if stat is None or not stat.usable() or in_stage is None or in_stage <= stat.p75:
        return None
    priority = Priority.HIGH if in_stage > stat.p90 else Priority.MEDIUM
    return Alert(
        dedup_key=dedup_key("stage_stagnation", deal.deal_id, stat_key(deal.stage), _date(entered), priority.value),
        deal_id=deal.deal_id,
        rule="stage_stagnation",
        priority=priority,
        title=f"{in_stage:.0f} days in {deal.stage}",
        description=(
            f"In '{deal.stage}' for {in_stage:.1f} days; the workspace's stays there have a 75th percentile of "
            f"{stat.p75:.1f} and a 90th of {stat.p90:.1f} days ({stat.count} stays)."
        ),
        evidence={"days_in_stage": round(in_stage, 2), "p75_days": round(stat.p75, 2),
                  "p90_days": round(stat.p90, 2), "stays": float(stat.count)},
    )


def probability_drop(scan: DealScan, history: WorkspaceHistory, now: datetime) -> Alert | None:
    before = scan.previous.rep_probability if scan.previous else None
    current = scan.deal.probability
    if before is None or current is None or before - current < PROBABILITY_DROP - 1e-9:
        return None
    drop = before - current
    priority = Priority.HIGH if drop >= 2 * PROBABILITY_DROP - 1e-9 else Priority.MEDIUM
    return Alert(
        dedup_key=dedup_key("probability_drop", scan.deal.deal_id, round(before, 4), round(current, 4)),
        deal_id=scan.deal.deal_id,
        rule="probability_drop",
        priority=priority,
        title=f"Rep probability down {100 * drop:.0f} points",
        description=(
            f"The rep's probability fell from {100 * before:.0f}% to {100 * current:.0f}% since the scan of "
            f"{_date(scan.previous.scanned_at)}."
        ),
        evidence={"previous_probability": before, "probability": current, "drop": round(drop, 4)},
    )


def close_date_slippage(scan: DealScan, history: WorkspaceHistory, now: datetime) -> Alert | None:
    deal = scan.deal
    expected = deal.expected_close_at
    if expected is None:
        return None
    overdue = _days(now, expected)
    if overdue is not None and overdue > 0:
        priority = Priority.CRITICAL if overdue > LONG_OVERDUE_DAYS else Priority.HIGH
        return Alert(
            dedup_key=dedup_key("close_date_slippage", deal.deal_id, "passed", _date(expected), priority.value),
            deal_id=deal.deal_id,
            rule="close_date_slippage",
            priority=priority,
            title="Expected close date passed",
            description=f"The expected close date {_date(expected)} passed {overdue:.1f} days ago; the deal is open.",
            evidence={"days_overdue": round(overdue, 2)},
        )
    before = scan.previous.expected_close_at if scan.previous else None
    moved = _days(expected, before)
    if moved is None or moved < 1:
        return None
    priority = Priority.HIGH if moved >= LONG_SLIP_DAYS else Priority.MEDIUM
    return Alert(
        dedup_key=dedup_key("close_date_slippage", deal.deal_id, "moved", _date(before), _date(expected)),
        deal_id=deal.deal_id,
        rule="close_date_slippage",
        priority=priority,
        title=f"Close date slipped {moved:.0f} days",
        description=(
            f"The expected close date moved from {_date(before)} to {_date(expected)} ({moved:.1f} days later) "
            f"since the scan of {_date(scan.previous.scanned_at)}."
        ),
        evidence={"days_moved": round(moved, 2)},
    )


def score_drop(scan: DealScan, history: WorkspaceHistory, now: datetime) -> Alert | None:
    before = scan.previous.win_probability if scan.previous else None
    current = scan.win_probability
    if before is None or current is None or before - current < SCORE_DROP - 1e-9:
        return None
    drop = before - current
    priority = Priority.CRITICAL if drop >= 0.35 else Priority.HIGH if drop >= 0.2 else Priority.MEDIUM
    versions = ""
    if scan.previous.scorer_version != scan.scorer_version:
        versions = f" (scorer v{scan.previous.scorer_version} then v{scan.scorer_version})"
    return Alert(
        dedup_key=dedup_key("score_drop", scan.deal.deal_id, round(before, 3), round(current, 3)),
        deal_id=scan.deal.deal_id,
        rule="score_drop",
        priority=priority,
        title=f"Win probability down {100 * drop:.0f} points",
        description=(
            f"The model's win probability fell from {100 * before:.0f}% to {100 * current:.0f}% since the scan of "
            f"{_date(scan.previous.scanned_at)}{versions}."
        ),
        evidence={"previous_win_probability": round(before, 4), "win_probability": round(current, 4),
                  "drop": round(drop, 4)},
    )


RULES = (stale_deal, stage_stagnation, probability_drop, close_date_slippage, score_drop)


def scan_deals(scans: Sequence[DealScan], history: WorkspaceHistory, now: datetime) -> list[Alert]:
    """Every alert on these deals, highest priority first (then deal id, rule)."""
    alerts = [alert for scan in scans for rule in RULES if (alert := rule(scan, history, now)) is not None]
    alerts.sort(key=lambda a: (_RANK[a.priority], a.deal_id, a.rule))
    return alerts


# --- the pipeline monitor ----------------------------------------------------------------


class PipelineMonitor:
    """Scans a workspace's open deals (given, or the stored ones), stores the scan
    state and the alerts in the ledger, and returns the alerts."""

    def __init__(self, registry, history: HistoryIndex, ledger: Ledger, scoring: ScoringEngine | None = None) -> None:
        self.registry = registry
        self.history = history
        self.ledger = ledger
        # The one scoring path (with the similarity features when it has a store),
        # so a scan's probabilities are ScoreDeal's.
        self.scoring = scoring or ScoringEngine(registry)

    async def scan(
        self, workspace_id: str, deals: Sequence[DealRecord] | None = None, now: datetime | None = None
    ) -> ScanResult:
        """`deals` empty or None scans the workspace's stored open deals."""
        if not workspace_id:
            raise InvalidInput("workspace_id", "required")
        now = now or datetime.now(UTC)
        if deals:
            if len(deals) > MAX_SCAN_DEALS:
                raise InvalidInput("deals", f"at most {MAX_SCAN_DEALS} deals, got {len(deals)}")
            seen: dict[str, int] = {}
            for index, deal in enumerate(deals):
                if deal.workspace_id not in ("", workspace_id):
                    raise InvalidInput(f"deals[{index}].workspace_id", "must be empty or equal to the request's")
                if deal.outcome is not Outcome.OPEN:
                    raise InvalidInput(f"deals[{index}].outcome", "must be open")
                if deal.deal_id in seen:
                    raise InvalidInput(f"deals[{index}].id", f"duplicate of deals[{seen[deal.deal_id]}].id")
                seen[deal.deal_id] = index
            records = list(deals)
            history = await asyncio.to_thread(self.history.history, workspace_id)
        else:
            history, records = await asyncio.to_thread(self._stored_open, workspace_id)
        probabilities = await self._probabilities(workspace_id, records, now)
        previous = await asyncio.to_thread(self.ledger.scan_states, workspace_id, [r.deal_id for r in records])
        scans = [
            DealScan(
                deal=record,
                win_probability=probabilities.get(record.deal_id, (None, None))[0],
                scorer_version=probabilities.get(record.deal_id, (None, None))[1],
                previous=previous.get(record.deal_id),
            )
            for record in records
        ]
        alerts = scan_deals(scans, history, now)
        states = {
            s.deal.deal_id: ScanState(now, s.deal.probability, s.deal.expected_close_at, s.win_probability,
                                      s.scorer_version)
            for s in scans
        }
        rows = [
            AlertRow(a.dedup_key, a.deal_id, a.rule, a.priority.value, a.title, a.description, a.evidence, now, now,
                     None)
            for a in alerts
        ]
        await asyncio.to_thread(self.ledger.save_scan, workspace_id, states, rows)
        return ScanResult(alerts, len(scans))

    def _stored_open(self, workspace_id: str) -> tuple[WorkspaceHistory, list[DealRecord]]:
        history = self.history.history(workspace_id)
        ids = self.history.open_deal_ids(workspace_id)
        records = self.history.stored_records(workspace_id, ids)
        return history, [records[i] for i in sorted(records)]

    async def _probabilities(
        self, workspace_id: str, records: Sequence[DealRecord], now: datetime
    ) -> dict[str, tuple[float, int]]:
        """deal id -> (win probability, scorer version); empty without a scorer (the
        score rule is skipped, the others run)."""
        found: dict[str, tuple[float, int]] = {}
        # The request's workspace is the deals' own: their neighbours are looked up in it.
        scoped = [r if r.workspace_id == workspace_id else replace(r, workspace_id=workspace_id) for r in records]
        for start in range(0, len(scoped), SCORE_CHUNK):
            try:
                scored = await self.scoring.score(scoped[start : start + SCORE_CHUNK], top_factors=0, now=now)
            except (Unavailable, NotFound):
                return {}
            for one in scored:
                if math.isfinite(one.result.win_probability):
                    found[one.result.deal_id] = (one.result.win_probability, one.model_version)
        return found
