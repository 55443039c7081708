"""Workspace history: the statistics of a workspace's stored deals that insights
and alerts compare a deal with (`WorkspaceHistory`), what each stored deal
contributes to them (`StoredDeal`), and their incremental aggregation
(`HistoryAggregate`: a deal added or removed costs a few dictionary updates and
sorted-list insertions, not a pass over the workspace).

A workspace statistic is quoted only with at least `MIN_SAMPLE` observations.
`server.engines.insight.history_index` keeps one aggregate per workspace current
over the similarity store.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from server.engines.insight.dates import days_between
from server.stores.base import RECORD, TEXT_SHA256
from vectoros.core.deal_codec.payload import record_from_json
from vectoros.core.deal_text import clean, value_band
from vectoros.core.deals import DealRecord, Outcome, StageChange
from vectoros.core.features import is_terminal_stage

# Below this many observations a workspace statistic is not quoted: a "75th
# percentile" of three deals says nothing.
MIN_SAMPLE = 5


@dataclass(frozen=True)
class RateStat:
    """`won` of `closed` deals."""

    won: int = 0
    closed: int = 0

    @property
    def rate(self) -> float | None:
        return self.won / self.closed if self.closed else None

    def usable(self) -> bool:
        return self.closed >= MIN_SAMPLE


@dataclass(frozen=True)
class DurationStat:
    """Days: how many observations, their median, 75th and 90th percentiles."""

    count: int
    median: float
    p75: float
    p90: float

    @classmethod
    def of(cls, values: Sequence[float]) -> DurationStat | None:
        return _duration_of_sorted(sorted(values))

    def usable(self) -> bool:
        return self.count >= MIN_SAMPLE


@dataclass(frozen=True)
class WorkspaceHistory:
    """Statistics of a workspace's stored deals. Stage and industry keys are
    lower-cased with whitespace collapsed (`stat_key`); size bands are the
    deal-text template's (`value_band`), "no amount" for 0.

    - `by_stage`: win rate of closed deals that *reached* the stage.
    - `days_in_stage`: completed stays (entered to next stage, or to the close),
      of open and closed deals.
    - `activity_gap_days`: per won deal, days from creation to close divided by
      its activities: how often won deals were touched.
    - `slipped` / `on_time`: closed deals that closed after / by their expected
      close date.
    - `by_contacts`: keys "1", "2", "3+" (0 counts as 1: nobody engaged beyond the
      first touch).
    """

    deals: int = 0
    open: int = 0
    overall: RateStat = RateStat()
    by_industry: Mapping[str, RateStat] = field(default_factory=dict)
    by_stage: Mapping[str, RateStat] = field(default_factory=dict)
    by_size_band: Mapping[str, RateStat] = field(default_factory=dict)
    with_competitor: RateStat = RateStat()
    without_competitor: RateStat = RateStat()
    by_contacts: Mapping[str, RateStat] = field(default_factory=dict)
    slipped: RateStat = RateStat()
    on_time: RateStat = RateStat()
    days_in_stage: Mapping[str, DurationStat] = field(default_factory=dict)
    activity_gap_days: DurationStat | None = None
    won_cycle_days: DurationStat | None = None
    generation: int = 0


def stat_key(text: str) -> str:
    return clean(text).lower()


def _stage_key(text: str) -> str:
    return stat_key(text)


def size_band(value: float) -> str:
    return value_band(value) or "no amount"


def contacts_bucket(contact_count: int) -> str:
    return "3+" if contact_count >= 3 else ("2" if contact_count == 2 else "1")


@dataclass(frozen=True, slots=True)
class StoredDeal:
    """What the history needs of one stored deal (a few hundred bytes, so 100,000
    deals fit in tens of MB)."""

    deal_id: str
    outcome: str
    industry: str
    stages_reached: tuple[str, ...]
    size_band: str
    competitor: bool | None
    contacts: str
    stays: tuple[tuple[str, float], ...]
    activity_gap_days: float | None
    cycle_days: float | None
    slipped: bool | None
    text_sha256: str

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> StoredDeal:
        record = record_from_json(payload[RECORD])
        return cls.from_record(record, payload.get(TEXT_SHA256, ""))

    @classmethod
    def from_record(cls, record: DealRecord, text_hash: str = "") -> StoredDeal:
        closed = record.outcome is not Outcome.OPEN
        cycle = days_between(record.closed_at, record.created_at) if closed else None
        activities = sum(int(v) for v in record.activity_counts.values())
        gap = cycle / max(1, activities) if cycle is not None and cycle >= 0 else None
        slipped = None
        if closed and record.closed_at is not None and record.expected_close_at is not None:
            # A day of grace: CRMs store close dates without a time.
            slipped = record.closed_at > record.expected_close_at + timedelta(days=1)
        return cls(
            deal_id=record.deal_id,
            outcome=record.outcome.value,
            industry=stat_key(record.industry),
            stages_reached=tuple(dict.fromkeys(_stage_key(s) for s in stages_of(record))),
            size_band=size_band(record.value),
            competitor=record.competitor_present,
            contacts=contacts_bucket(record.contact_count),
            stays=_stays(record),
            activity_gap_days=gap,
            cycle_days=cycle if cycle is not None and cycle >= 0 else None,
            slipped=slipped,
            text_sha256=text_hash,
        )


def stages_of(record: DealRecord) -> list[str]:
    """The non-terminal stages of the deal's history, then its current stage (repeats kept)."""
    stages = [c.stage for c in record.stage_history if c.stage and not is_terminal_stage(c.stage)]
    if record.stage and not is_terminal_stage(record.stage):
        stages.append(record.stage)
    return stages


def _stays(record: DealRecord) -> tuple[tuple[str, float], ...]:
    """Completed stays in non-terminal stages, in days."""
    history = sorted(record.stage_history, key=lambda c: c.entered_at)
    if not history and record.stage and record.stage_entered_at is not None:
        history = [StageChange(record.stage, record.stage_entered_at)]
    stays = []
    for current, following in zip(history, history[1:], strict=False):
        stays.append((current.stage, days_between(following.entered_at, current.entered_at)))
    if history and record.outcome is not Outcome.OPEN and record.closed_at is not None:
        stays.append((history[-1].stage, days_between(record.closed_at, history[-1].entered_at)))
    return tuple(
        (_stage_key(stage), days) for stage, days in stays
        if stage and not is_terminal_stage(stage) and days is not None and days >= 0
    )


def _percentile(values: Sequence[float], q: float) -> float:
    """Percentile of sorted values, linear interpolation (NumPy's default method)."""
    position = (len(values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _duration_of_sorted(values: Sequence[float]) -> DurationStat | None:
    if not values:
        return None
    return DurationStat(len(values), _percentile(values, 50), _percentile(values, 75), _percentile(values, 90))


class HistoryAggregate:
    """The counts and sorted durations behind a `WorkspaceHistory`, updated deal by
    deal: `add` and `remove` cost a few dictionary updates and sorted-list
    insertions, and `summary()` reads percentiles off the sorted lists, so a write
    to a workspace of 10,000 deals does not cost a pass over all of them."""

    def __init__(self) -> None:
        self.total = 0
        self.open = 0
        self.pairs: dict[tuple[str, str], list[int]] = {}  # (table, key) -> [won, closed]
        self.durations: dict[tuple[str, str], list[float]] = {}  # (table, key) -> sorted days

    def _count(self, table: str, key: str, won: bool, sign: int) -> None:
        pair = self.pairs.setdefault((table, key), [0, 0])
        pair[0] += sign * won
        pair[1] += sign
        if pair[1] == 0:
            del self.pairs[(table, key)]

    def _duration(self, table: str, key: str, days: float, sign: int) -> None:
        values = self.durations.setdefault((table, key), [])
        if sign > 0:
            bisect.insort(values, days)
        else:
            index = bisect.bisect_left(values, days)
            if index < len(values) and values[index] == days:
                del values[index]
            if not values:
                del self.durations[(table, key)]

    def add(self, deal: StoredDeal, sign: int = 1) -> None:
        self.total += sign
        for stage, days in deal.stays:
            self._duration("stage", stage, days, sign)
        if deal.outcome == "open":
            self.open += sign
            return
        won = deal.outcome == "won"
        self._count("overall", "", won, sign)
        self._count("industry", deal.industry, won, sign)
        for stage in deal.stages_reached:
            self._count("stage", stage, won, sign)
        self._count("band", deal.size_band, won, sign)
        self._count("contacts", deal.contacts, won, sign)
        if deal.competitor is not None:
            self._count("competitor", "with" if deal.competitor else "without", won, sign)
        if deal.slipped is not None:
            self._count("close", "slipped" if deal.slipped else "on_time", won, sign)
        if won:
            if deal.activity_gap_days is not None:
                self._duration("gap", "", deal.activity_gap_days, sign)
            if deal.cycle_days is not None:
                self._duration("cycle", "", deal.cycle_days, sign)

    def remove(self, deal: StoredDeal) -> None:
        self.add(deal, -1)

    def summary(self, generation: int = 0) -> WorkspaceHistory:
        def rate(table: str, key: str) -> RateStat:
            pair = self.pairs.get((table, key))
            return RateStat(*pair) if pair else RateStat()

        def rates(table: str) -> dict[str, RateStat]:
            return {key: RateStat(*pair) for (t, key), pair in self.pairs.items() if t == table and key}

        return WorkspaceHistory(
            deals=self.total,
            open=self.open,
            overall=rate("overall", ""),
            by_industry=rates("industry"),
            by_stage=rates("stage"),
            by_size_band=rates("band"),
            with_competitor=rate("competitor", "with"),
            without_competitor=rate("competitor", "without"),
            by_contacts=rates("contacts"),
            slipped=rate("close", "slipped"),
            on_time=rate("close", "on_time"),
            days_in_stage={
                key: _duration_of_sorted(values) for (t, key), values in self.durations.items() if t == "stage" and key
            },
            activity_gap_days=_duration_of_sorted(self.durations.get(("gap", ""), [])),
            won_cycle_days=_duration_of_sorted(self.durations.get(("cycle", ""), [])),
            generation=generation,
        )


def summarize_history(deals: Iterable[StoredDeal], generation: int = 0) -> WorkspaceHistory:
    """Aggregate stored deals into a `WorkspaceHistory`."""
    aggregate = HistoryAggregate()
    for deal in deals:
        aggregate.add(deal)
    return aggregate.summary(generation)

