"""The Insight engine: context assembly, the generator interface, the cache and
the ledger (feedback, outcomes, export).

A request for insights on one deal runs:

1. the scorer (production or canary by deal id) for the win probability and the
   top factors;
2. the similarity engine for the most similar *closed* deals of the same
   workspace, with their outcomes (the deal's stored vector is reused when its
   text has not changed; otherwise the deal is embedded);
3. the workspace's own history (`WorkspaceHistory`: win rate by industry, stage
   reached, size band, competitor, contacts and close-date slippage; days per
   stage; the activity cadence of won deals), kept by `HistoryIndex`
   incrementally from the similarity store's write notifications, so a request
   never scans the store;
4. a generator (`InsightGenerator`: the rules in `server.engines.rules`, or
   Claude in `server.engines.claude`, which falls back to the rules), whose
   `GeneratedInsights` are stored in the ledger under a new id.

The cache. A set is stored with a key: the SHA-256 of the deal snapshot (every
field but the snapshot time), the scorer and embedder versions, the generator
id and the UTC day. Within a day the same key returns the stored set (same id,
`cached=True`) without calling the generator; the day is in the key because
the context holds durations ("no activity for 23 days") that change with it.
Sets produced by a fallback are not cached, so the next request tries the
configured generator again.

No grpc here; `server.services.insight` translates.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import logging
import math
import threading
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from server.engines.neighbours import SimilarNeighbours
from server.engines.similarity import Query, SimilarityEngine, text_sha256
from server.ledger import InsightSetRow, Ledger
from server.stores.base import RECORD, TEXT_SHA256, DealFilter, DealPoint, point_id
from vectoros.core.deal_codec.payload import record_from_json, record_to_dict, snapshot_from_json, snapshot_to_json
from vectoros.core.deal_codec.row import record_to_row
from vectoros.core.deal_text import clean, deal_to_text, value_band
from vectoros.core.deals import ACTIVITY_TYPES, DealRecord, Outcome, StageChange
from vectoros.core.errors import InvalidInput, NotFound
from vectoros.core.features import is_terminal_stage

log = logging.getLogger("vectoros.insight")

SCORER = "scorer"
RULES = "rules"
SIMILAR_DEALS = 10
TOP_FACTORS = 8
# Below this many observations a workspace statistic is not quoted: a "75th
# percentile" of three deals says nothing.
MIN_SAMPLE = 5
MAX_COMMENT_BYTES = 4 * 1024
MAX_IDEMPOTENCY_KEY_BYTES = 256
CLOSED = DealFilter(outcomes=("won", "lost"))
_DAY = 86_400.0


class InsightType(StrEnum):
    RISK = "risk"
    OPPORTUNITY = "opportunity"
    NEXT_ACTION = "next_action"
    PREDICTION = "prediction"


class Rating(StrEnum):
    HELPFUL = "helpful"
    NOT_HELPFUL = "not_helpful"
    INCORRECT = "incorrect"


class ExportFormat(StrEnum):
    LABELLED_EXAMPLES = "labelled_examples"
    CHAT_FINETUNE = "chat_finetune"
    SCORER_ROWS = "scorer_rows"


# --- what a generator produces ------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """What an insight rests on: score factors or statistics by name (see
    `InsightContext.evidence_names`) and ids of similar deals in the context."""

    factor_names: tuple[str, ...] = ()
    similar_deal_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Insight:
    id: str
    type: InsightType
    title: str
    description: str
    confidence: float
    actions: tuple[str, ...] = ()
    evidence: Evidence = Evidence()


@dataclass(frozen=True)
class Usage:
    """Tokens billed by a language model (0 for rules) and wall time in ms."""

    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0


@dataclass(frozen=True)
class GeneratedInsights:
    """A generator's answer. `generator` is "rules" or "claude:<model id>";
    `fallback_reason` says why the configured generator was not used (else "")."""

    insights: tuple[Insight, ...]
    win_probability: float
    win_probability_reasoning: str
    generator: str
    fallback_reason: str = ""
    usage: Usage = Usage()


# --- the context ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int


@dataclass(frozen=True)
class ScoreFactor:
    feature: str
    value_text: str
    contribution: float


@dataclass(frozen=True)
class ScoreView:
    """The scorer's answer on the deal, as the context carries it."""

    win_probability: float
    risk_level: str
    factors: tuple[ScoreFactor, ...]
    scorer: ModelRef


@dataclass(frozen=True)
class SimilarDeal:
    """A similar closed deal of the workspace, reduced to what insights compare."""

    deal_id: str
    similarity: float
    outcome: Outcome
    industry: str
    stage: str
    value: float
    contact_count: int
    competitor_present: bool | None
    activity_counts: Mapping[str, int]
    stages: tuple[str, ...]
    cycle_days: float | None

    @classmethod
    def from_record(cls, record: DealRecord, similarity: float) -> SimilarDeal:
        return cls(
            deal_id=record.deal_id,
            similarity=similarity,
            outcome=record.outcome,
            industry=record.industry,
            stage=record.stage,
            value=record.value,
            contact_count=record.contact_count,
            competitor_present=record.competitor_present,
            activity_counts={k: int(record.activity_counts.get(k, 0)) for k in ACTIVITY_TYPES},
            stages=tuple(dict.fromkeys(_stage_key(s) for s in _stages_of(record))),
            cycle_days=_days(record.closed_at, record.created_at),
        )


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


@dataclass(frozen=True)
class InsightContext:
    """Everything a generator may use about one deal, as of `now`.

    `previous_expected_close_at`: the expected close date in the deal's previous
    stored snapshot (from an earlier insight request), for slippage."""

    deal: DealRecord
    now: datetime
    score: ScoreView
    embedder: ModelRef
    similar: tuple[SimilarDeal, ...]
    history: WorkspaceHistory
    previous_expected_close_at: datetime | None = None
    previous_snapshot_at: datetime | None = None

    # --- facts of the deal, as of now ---

    @property
    def days_since_last_activity(self) -> float | None:
        return _days(self.now, self.deal.last_activity_at)

    @property
    def days_since_created(self) -> float | None:
        return _days(self.now, self.deal.created_at)

    @property
    def stage_entered_at(self) -> datetime | None:
        if self.deal.stage_entered_at is not None:
            return self.deal.stage_entered_at
        same = [c.entered_at for c in self.deal.stage_history if _stage_key(c.stage) == _stage_key(self.deal.stage)]
        return max(same) if same else None

    @property
    def days_in_stage(self) -> float | None:
        return _days(self.now, self.stage_entered_at)

    @property
    def days_to_expected_close(self) -> float | None:
        return _days(self.deal.expected_close_at, self.now)

    @property
    def similar_ids(self) -> frozenset[str]:
        return frozenset(d.deal_id for d in self.similar)

    def evidence_names(self) -> frozenset[str]:
        """Names an insight may cite as `factor_names`: the score's factors and the
        statistics the context holds."""
        return frozenset(f.feature for f in self.score.factors) | STAT_NAMES

    def allowed_win_probability(self) -> tuple[float, float]:
        """The range a generator's win probability must stay in: the calibrated
        score +- `MAX_ADJUSTMENT`. The score has a measured track record (its
        Brier score); a generator may nudge it with reasons, not replace it."""
        p = self.score.win_probability
        return max(0.0, p - MAX_ADJUSTMENT), min(1.0, p + MAX_ADJUSTMENT)

    def document(self) -> dict[str, Any]:
        """The context as plain JSON data: what Claude reads (inside a delimited
        data block) and what the ledger keeps with the set."""
        deal, history = self.deal, self.history
        industry, stage, band = stat_key(deal.industry), _stage_key(deal.stage), size_band(deal.value)
        low, high = self.allowed_win_probability()
        return {
            "as_of": _iso(self.now),
            "deal": {
                "id": deal.deal_id,
                "name": deal.name,
                "company": deal.company,
                "industry": deal.industry,
                "region": deal.region,
                "stage": deal.stage,
                "value": deal.value,
                "currency": deal.currency,
                "size_band": band,
                "rep_probability": deal.probability,
                "created_at": _iso(deal.created_at),
                "expected_close_at": _iso(deal.expected_close_at),
                "previous_expected_close_at": _iso(self.previous_expected_close_at),
                "stage_entered_at": _iso(self.stage_entered_at),
                "last_activity_at": _iso(deal.last_activity_at),
                "days_since_last_activity": _round(self.days_since_last_activity),
                "days_in_stage": _round(self.days_in_stage),
                "days_to_expected_close": _round(self.days_to_expected_close),
                "stage_history": [[c.stage, _iso(c.entered_at)] for c in deal.stage_history],
                "activity_counts": {k: int(deal.activity_counts.get(k, 0)) for k in ACTIVITY_TYPES},
                "competitor_present": deal.competitor_present,
                "contact_count": deal.contact_count,
                "numeric_attributes": dict(deal.numeric_attributes),
                "categorical_attributes": dict(deal.categorical_attributes),
                "notes": deal.notes,
            },
            "score": {
                "scorer": {"name": self.score.scorer.name, "version": self.score.scorer.version},
                "win_probability": round(self.score.win_probability, 4),
                "risk_level": self.score.risk_level,
                "factors": [
                    {"name": f.feature, "value": f.value_text, "contribution": round(f.contribution, 4)}
                    for f in self.score.factors
                ],
            },
            "similar_closed_deals": [
                {
                    "id": d.deal_id,
                    "similarity": round(d.similarity, 4),
                    "outcome": d.outcome.value,
                    "industry": d.industry,
                    "stage": d.stage,
                    "value": d.value,
                    "contact_count": d.contact_count,
                    "competitor_present": d.competitor_present,
                    "activity_counts": dict(d.activity_counts),
                    "stages": list(d.stages),
                    "cycle_days": _round(d.cycle_days),
                }
                for d in self.similar
            ],
            "workspace_history": {
                "stored_deals": history.deals,
                "closed_deals": history.overall.closed,
                "win_rate": _rate(history.overall),
                "win_rate_industry": _rate(history.by_industry.get(industry)),
                "win_rate_stage": _rate(history.by_stage.get(stage)),
                "win_rate_size_band": _rate(history.by_size_band.get(band)),
                "win_rate_with_competitor": _rate(history.with_competitor),
                "win_rate_without_competitor": _rate(history.without_competitor),
                "win_rate_by_contacts": {k: _rate(v) for k, v in sorted(history.by_contacts.items())},
                "win_rate_slipped": _rate(history.slipped),
                "win_rate_on_time": _rate(history.on_time),
                "days_in_stage": {k: _duration(v) for k, v in sorted(history.days_in_stage.items())},
                "activity_gap_days_won": _duration(history.activity_gap_days),
                "cycle_days_won": _duration(history.won_cycle_days),
            },
            "evidence_names": sorted(self.evidence_names()),
            "allowed_win_probability_range": [round(low, 4), round(high, 4)],
        }


# A generator may move the win probability this far from the calibrated score.
MAX_ADJUSTMENT = 0.15

# Statistics an insight may cite besides the score's factors.
STAT_NAMES = frozenset(
    (
        "score.win_probability",
        "deal.days_since_last_activity",
        "deal.days_in_stage",
        "deal.expected_close_at",
        "deal.previous_expected_close_at",
        "deal.rep_probability",
        "deal.competitor_present",
        "deal.contact_count",
        "deal.stage_history",
        *(f"deal.activity_counts.{kind}" for kind in ACTIVITY_TYPES),
        "similar_closed_deals",
        "workspace.win_rate",
        "workspace.win_rate_industry",
        "workspace.win_rate_stage",
        "workspace.win_rate_size_band",
        "workspace.win_rate_with_competitor",
        "workspace.win_rate_without_competitor",
        "workspace.win_rate_by_contacts",
        "workspace.win_rate_slipped",
        "workspace.win_rate_on_time",
        "workspace.days_in_stage",
        "workspace.activity_gap_days_won",
        "workspace.cycle_days_won",
    )
)


class InsightGenerator(Protocol):
    """Turns a context into insights. `id` goes into the cache key and the ledger."""

    id: str

    async def generate(self, context: InsightContext) -> GeneratedInsights: ...


# --- the workspace history, kept incrementally ---------------------------------------------


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
        cycle = _days(record.closed_at, record.created_at) if closed else None
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
            stages_reached=tuple(dict.fromkeys(_stage_key(s) for s in _stages_of(record))),
            size_band=size_band(record.value),
            competitor=record.competitor_present,
            contacts=contacts_bucket(record.contact_count),
            stays=_stays(record),
            activity_gap_days=gap,
            cycle_days=cycle if cycle is not None and cycle >= 0 else None,
            slipped=slipped,
            text_sha256=text_hash,
        )


def _stages_of(record: DealRecord) -> list[str]:
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
        stays.append((current.stage, _days(following.entered_at, current.entered_at)))
    if history and record.outcome is not Outcome.OPEN and record.closed_at is not None:
        stays.append((history[-1].stage, _days(record.closed_at, history[-1].entered_at)))
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


@dataclass
class _Workspace:
    deals: dict[str, StoredDeal] = field(default_factory=dict)  # by point id
    aggregate: HistoryAggregate = field(default_factory=HistoryAggregate)
    generation: int = 0
    summary: WorkspaceHistory | None = None

    def put(self, point_id: str, deal: StoredDeal | None) -> None:
        old = self.deals.pop(point_id, None)
        if old is not None:
            self.aggregate.remove(old)
        if deal is not None:
            self.deals[point_id] = deal
            self.aggregate.add(deal)


class HistoryIndex:
    """Per-workspace `WorkspaceHistory` over the similarity store, kept current
    without scanning the store per request.

    - Built lazily with one scroll over the served collection (every workspace at
      once: the store has no per-workspace scan), on the first request.
    - The similarity engine calls `_on_write(collection, workspace, point_ids)`
      after every upsert or delete; the ids are noted per workspace. A workspace
      catches up when it is next asked for: it reads its noted ids back
      (`Collection.retrieve`) and drops those that are gone. So a write costs a
      set insertion, and a request after writes one retrieve of what changed.
    - Each workspace keeps a `HistoryAggregate` updated deal by deal; its summary
      is rebuilt (cheaply) only when the workspace changed.
    - When the served collection changes (a rebuild or a new embedder), the index
      is built again.

    Thread-safe; every method blocks (call from a worker thread).
    """

    def __init__(self, similarity: SimilarityEngine) -> None:
        self._similarity = similarity
        self._lock = threading.Lock()  # the index; held during a catch-up
        self._dirty_lock = threading.Lock()  # noted writes only: writers never wait for a catch-up
        self._dirty: dict[str, set[str]] = {}
        self._collection: str | None = None
        self._workspaces: dict[str, _Workspace] = {}
        similarity.add_write_listener(self._on_write)

    def close(self) -> None:
        self._similarity.remove_write_listener(self._on_write)

    def _on_write(self, collection_name: str, workspace_id: str, point_ids: Sequence[str]) -> None:
        # Writes to any collection count: a catch-up reads the served one.
        with self._dirty_lock:
            self._dirty.setdefault(workspace_id, set()).update(point_ids)

    def _take_dirty(self, workspace_id: str) -> set[str]:
        with self._dirty_lock:
            return self._dirty.pop(workspace_id, set())

    def _build(self, collection) -> None:
        with self._dirty_lock:
            self._dirty.clear()  # whatever is written from here on is read back later
        by_workspace: dict[str, _Workspace] = {}
        offset = None
        while True:
            points, offset = collection.scroll(offset, 512, with_vectors=False)
            for point in points:
                if point.workspace_id and RECORD in point.payload:
                    state = by_workspace.setdefault(point.workspace_id, _Workspace())
                    state.put(point.point_id, StoredDeal.from_payload(point.payload))
            if offset is None:
                break
        self._workspaces = by_workspace
        self._collection = collection.name
        log.info("workspace history built", extra={"deals": sum(len(w.deals) for w in by_workspace.values())})

    def _current(self, workspace_id: str) -> _Workspace:
        collection, _ = self._similarity.serving()
        if self._collection != collection.name:
            self._build(collection)
        state = self._workspaces.setdefault(workspace_id, _Workspace())
        dirty = list(self._take_dirty(workspace_id))
        if not dirty:
            return state
        found: dict[str, DealPoint] = {}
        for start in range(0, len(dirty), 1000):
            for point in collection.retrieve(workspace_id, dirty[start : start + 1000]):
                if point.workspace_id == workspace_id and RECORD in point.payload:
                    found[point.point_id] = point
        for pid in dirty:
            point = found.get(pid)
            state.put(pid, StoredDeal.from_payload(point.payload) if point is not None else None)
        state.generation += 1
        state.summary = None
        return state

    def ensure_built(self) -> None:
        """Build the index now if the served collection has none yet (one scroll)."""
        with self._lock:
            collection, _ = self._similarity.serving()
            if self._collection != collection.name:
                self._build(collection)

    def history(self, workspace_id: str) -> WorkspaceHistory:
        return self.lookup(workspace_id)[0]

    def lookup(self, workspace_id: str, deal_id: str | None = None) -> tuple[WorkspaceHistory, StoredDeal | None]:
        """The workspace's history and, if asked, the stored facts of one deal."""
        with self._lock:
            state = self._current(workspace_id)
            if state.summary is None:
                state.summary = state.aggregate.summary(state.generation)
            stored = state.deals.get(point_id(workspace_id, deal_id)) if deal_id is not None else None
            return state.summary, stored

    def open_deal_ids(self, workspace_id: str) -> list[str]:
        """Deal ids of the workspace's stored open deals."""
        with self._lock:
            state = self._current(workspace_id)
            return [d.deal_id for d in state.deals.values() if d.outcome == Outcome.OPEN.value]

    def stored_records(self, workspace_id: str, deal_ids: Sequence[str]) -> dict[str, DealRecord]:
        """Full stored records of deals of the workspace (unknown ids left out)."""
        collection, _ = self._similarity.serving()
        found: dict[str, DealRecord] = {}
        ids = [point_id(workspace_id, d) for d in deal_ids]
        for start in range(0, len(ids), 256):
            for point in collection.retrieve(workspace_id, ids[start : start + 256]):
                if point.workspace_id == workspace_id and RECORD in point.payload:
                    record = record_from_json(point.payload[RECORD])
                    found[record.deal_id] = record
        return found


# --- snapshots in the ledger -------------------------------------------------------------


def context_key(
    record: DealRecord, scorer: ModelRef, embedder: ModelRef, generator_id: str, now: datetime
) -> str:
    """The cache key of a context (see the module docstring)."""
    material = json.dumps(
        [
            # Every field but the snapshot time, keys sorted: a protobuf map arrives in
            # no fixed order, and the same deal must give the same key in every process.
            record_to_dict(record),
            [scorer.name, scorer.version],
            [embedder.name, embedder.version],
            generator_id,
            now.astimezone(UTC).date().isoformat(),
        ],
        separators=(",", ":"),
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def insights_to_json(insights: Sequence[Insight]) -> str:
    return json.dumps(
        [
            {
                "id": i.id,
                "type": i.type.value,
                "title": i.title,
                "description": i.description,
                "confidence": i.confidence,
                "actions": list(i.actions),
                "evidence": {
                    "factor_names": list(i.evidence.factor_names),
                    "similar_deal_ids": list(i.evidence.similar_deal_ids),
                },
            }
            for i in insights
        ],
        ensure_ascii=False,
    )


def insights_from_json(text: str) -> tuple[Insight, ...]:
    return tuple(
        Insight(
            id=i["id"],
            type=InsightType(i["type"]),
            title=i["title"],
            description=i["description"],
            confidence=i["confidence"],
            actions=tuple(i["actions"]),
            evidence=Evidence(tuple(i["evidence"]["factor_names"]), tuple(i["evidence"]["similar_deal_ids"])),
        )
        for i in json.loads(text)
    )


# --- the engine -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InsightResult:
    insight_set_id: str
    generated: GeneratedInsights
    scorer: ModelRef
    embedder: ModelRef
    cached: bool


@dataclass(frozen=True)
class FeedbackResult:
    feedback_id: str
    duplicate: bool


class InsightEngine:
    """Insights on deals, stored in the ledger; feedback, outcomes and export.

    `registry` resolves the scorer (`select(name, routing_key)`), `similarity` is
    the similarity engine (opened), `history` its `HistoryIndex`, `generator` the
    configured `InsightGenerator`.
    """

    def __init__(
        self,
        registry,
        similarity: SimilarityEngine,
        ledger: Ledger,
        generator: InsightGenerator,
        history: HistoryIndex,
        *,
        similar_deals: int = SIMILAR_DEALS,
        top_factors: int = TOP_FACTORS,
    ) -> None:
        self.registry = registry
        self.similarity = similarity
        self._neighbours = SimilarNeighbours(similarity, registry)
        self.ledger = ledger
        self.generator = generator
        self.history = history
        self.similar_deals = similar_deals
        self.top_factors = top_factors

    # --- GenerateInsights ---

    async def generate(self, record: DealRecord, *, bypass_cache: bool = False) -> InsightResult:
        """Insights on `record` (checked; `snapshot_at` is the time of the request)."""
        started = _clock()
        workspace_id = record.workspace_id
        if not workspace_id:
            raise InvalidInput("deal.workspace_id", "required")
        now = record.snapshot_at or datetime.now(UTC)
        record = replace(record, snapshot_at=now)
        loaded = self.registry.select(SCORER, record.deal_id)
        scorer = ModelRef(loaded.name, loaded.version)
        _, embedder_model = self.similarity.serving()
        embedder = ModelRef(embedder_model.name, embedder_model.version)
        key = context_key(record, scorer, embedder, self.generator.id, now)

        if not bypass_cache:
            day_start = datetime(now.year, now.month, now.day, tzinfo=UTC)
            row = await asyncio.to_thread(self.ledger.cached_insight_set, workspace_id, key, day_start)
            if row is not None:
                return _result_from_row(row, cached=True, latency_ms=_clock() - started)

        history, stored = await asyncio.to_thread(self.history.lookup, workspace_id, record.deal_id)
        # The same similarity features ScoringService uses, so the probability shown
        # here is the one ScoreDeal gives for this deal.
        features = None
        if loaded.model.similarity is not None:
            features = await self._neighbours.features([record], loaded.model.similarity)
        (score,) = loaded.model.score([record], self.top_factors, similar=features)
        similar, embedder = await self._similar(record, stored)
        previous = await asyncio.to_thread(self.ledger.latest_insight_set, workspace_id, record.deal_id, now)
        previous_record = snapshot_from_json(previous.deal_json) if previous is not None else None
        context = InsightContext(
            deal=record,
            now=now,
            score=ScoreView(
                win_probability=score.win_probability,
                risk_level=score.risk_level,
                factors=tuple(ScoreFactor(f.feature, f.value_text, f.contribution) for f in score.top_factors),
                scorer=scorer,
            ),
            embedder=embedder,
            similar=similar,
            history=history,
            previous_expected_close_at=previous_record.expected_close_at if previous_record else None,
            previous_snapshot_at=previous_record.snapshot_at if previous_record else None,
        )
        generated = await self.generator.generate(context)
        latency_ms = _clock() - started
        if generated.generator == self.generator.id and not generated.fallback_reason:
            stored_key = key
        else:
            stored_key = None  # a fallback: the next request tries the configured generator again
        document = context.document()
        document["scorer_custom_dates"] = list(getattr(loaded.model.spec, "custom_dates", ()))
        row = InsightSetRow(
            id=uuid.uuid4().hex,
            workspace_id=workspace_id,
            deal_id=record.deal_id,
            created_at=now,
            generator=generated.generator,
            requested_generator=self.generator.id,
            fallback_reason=generated.fallback_reason,
            scorer_name=scorer.name,
            scorer_version=scorer.version,
            embedder_name=embedder.name,
            embedder_version=embedder.version,
            context_key=stored_key,
            win_probability=generated.win_probability,
            model_win_probability=score.win_probability,
            reasoning=generated.win_probability_reasoning,
            input_tokens=generated.usage.input_tokens,
            output_tokens=generated.usage.output_tokens,
            latency_ms=generated.usage.latency_ms or latency_ms,
            deal_json=snapshot_to_json(record),
            context_json=json.dumps(document, ensure_ascii=False, separators=(",", ":")),
            insights_json=insights_to_json(generated.insights),
        )
        await asyncio.to_thread(self.ledger.add_insight_set, row)
        if not generated.usage.latency_ms:
            generated = replace(generated, usage=replace(generated.usage, latency_ms=latency_ms))
        return InsightResult(row.id, generated, scorer, embedder, cached=False)

    async def _similar(self, record: DealRecord, stored: StoredDeal | None) -> tuple[tuple[SimilarDeal, ...], ModelRef]:
        workspace_id = record.workspace_id
        # The stored vector is the deal's own if its text is unchanged: no embedding.
        query = Query(deal=record)
        if stored is not None and stored.text_sha256 == text_sha256(deal_to_text(record)):
            query = Query(deal_id=record.deal_id)
        try:
            found = await self.similarity.find(workspace_id, query, deal_filter=CLOSED, top_k=self.similar_deals)
        except NotFound:  # deleted since the index saw it
            found = await self.similarity.find(
                workspace_id, Query(deal=record), deal_filter=CLOSED, top_k=self.similar_deals
            )
        similar = tuple(
            SimilarDeal.from_record(m.deal, m.score) for m in found.matches if m.deal.outcome is not Outcome.OPEN
        )
        return similar, ModelRef(found.embedder.name, found.embedder.version)

    # --- RecordFeedback ---

    async def record_feedback(
        self,
        workspace_id: str,
        insight_set_id: str,
        insight_id: str,
        rating: Rating,
        acted_on: bool,
        comment: str,
        idempotency_key: str,
        now: datetime | None = None,
    ) -> FeedbackResult:
        """Store a rating of a set (`insight_id` "") or of one insight of it. An
        empty `idempotency_key` is derived from the content, so the same feedback
        sent twice is recorded once."""
        _require(workspace_id, "workspace_id")
        _require(insight_set_id, "insight_set_id")
        if len(comment.encode("utf-8", "surrogatepass")) > MAX_COMMENT_BYTES:
            raise InvalidInput("comment", f"at most {MAX_COMMENT_BYTES} bytes")
        if len(idempotency_key.encode("utf-8", "surrogatepass")) > MAX_IDEMPOTENCY_KEY_BYTES:
            raise InvalidInput("idempotency_key", f"at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes")
        row = await asyncio.to_thread(self.ledger.insight_set, workspace_id, insight_set_id)
        if row is None:
            # The same answer for an unknown id and another workspace's.
            raise NotFound(f"insight_set_id: no insight set {insight_set_id!r} in workspace {workspace_id!r}")
        if insight_id and insight_id not in {i.id for i in insights_from_json(row.insights_json)}:
            raise NotFound(f"insight_id: no insight {insight_id!r} in insight set {insight_set_id!r}")
        if not idempotency_key:
            idempotency_key = "content:" + hashlib.sha256(
                json.dumps([insight_set_id, insight_id, rating.value, acted_on, comment]).encode()
            ).hexdigest()
        feedback_id, duplicate, same = await asyncio.to_thread(
            self.ledger.add_feedback,
            workspace_id, insight_set_id, insight_id, rating.value, acted_on, comment, idempotency_key,
            now or datetime.now(UTC),
        )
        if not same:
            raise InvalidInput("idempotency_key", "already used for different feedback")
        return FeedbackResult(feedback_id, duplicate)

    # --- RecordOutcome ---

    async def record_outcome(
        self,
        workspace_id: str,
        deal_id: str,
        outcome: Outcome,
        closed_at: datetime | None,
        final_value: float,
        now: datetime | None = None,
    ) -> bool:
        """Record how a deal ended and update the deal in the similarity store, so
        the next retrieval sees the outcome. The deal must be known: stored in the
        similarity store or seen by GenerateInsights (then its newest snapshot is
        stored, closed). Returns True when this exact outcome was already recorded."""
        _require(workspace_id, "workspace_id")
        _require(deal_id, "deal_id")
        if outcome is Outcome.OPEN:
            raise InvalidInput("outcome", "must be won or lost")
        if not (math.isfinite(final_value) and final_value >= 0):
            raise InvalidInput("final_value", f"must be finite and >= 0, got {final_value}")
        now = now or datetime.now(UTC)
        stored = (await asyncio.to_thread(self.history.stored_records, workspace_id, [deal_id])).get(deal_id)
        if stored is None:
            latest = await asyncio.to_thread(self.ledger.latest_insight_set, workspace_id, deal_id)
            if latest is None:
                raise NotFound(f"deal_id: no deal {deal_id!r} in workspace {workspace_id!r}")
            stored = replace(snapshot_from_json(latest.deal_json), snapshot_at=None)
        duplicate = await asyncio.to_thread(
            self.ledger.record_outcome, workspace_id, deal_id, outcome.value, closed_at, final_value, now
        )
        # 0 is proto3's "not set": a lost deal's final value is often not sent, and
        # zeroing its amount would change its text and its size band.
        closed = replace(
            stored, outcome=outcome, closed_at=closed_at or now, value=final_value or stored.value,
            workspace_id=workspace_id,
        )
        if closed != replace(stored, workspace_id=workspace_id):
            await self.similarity.upsert(workspace_id, [closed])
        return duplicate

    # --- ExportTrainingData ---

    async def export(
        self, workspace_id: str, export_format: ExportFormat, since: datetime | None = None, chunk: int = 256
    ) -> AsyncIterator[list[str]]:
        """JSON Lines of the workspace's ledger in `export_format`, `chunk` lines at a
        time (each read in a worker thread)."""
        _require(workspace_id, "workspace_id")
        lines = export_lines(self.ledger, workspace_id, export_format, since)
        while True:
            batch = await asyncio.to_thread(_take, lines, chunk)
            if not batch:
                return
            yield batch


def _take(lines: Iterator[str], count: int) -> list[str]:
    batch = []
    for line in lines:
        batch.append(line)
        if len(batch) >= count:
            break
    return batch


def _result_from_row(row: InsightSetRow, *, cached: bool, latency_ms: float) -> InsightResult:
    generated = GeneratedInsights(
        insights=insights_from_json(row.insights_json),
        win_probability=row.win_probability,
        win_probability_reasoning=row.reasoning,
        generator=row.generator,
        fallback_reason=row.fallback_reason,
        # A cached answer costs no tokens now; the latency is the lookup's.
        usage=Usage(0, 0, latency_ms),
    )
    return InsightResult(
        row.id, generated, ModelRef(row.scorer_name, row.scorer_version),
        ModelRef(row.embedder_name, row.embedder_version), cached=cached,
    )


# --- export ----------------------------------------------------------------------------------

LABELLED_SCHEMA = "vectoros.labelled_example.v1"


def export_lines(
    ledger: Ledger, workspace_id: str, export_format: ExportFormat, since: datetime | None = None
) -> Iterator[str]:
    """The workspace's training data as JSON Lines (see `server.services.insight`
    and `training.export` for the formats):

    - labelled examples: one line per insight set: the deal snapshot, the
      generated insights, every feedback on the set, and the deal's outcome
      (null while open);
    - chat fine-tuning records: one per set rated helpful at least once and never
      incorrect: the prompt the Claude generator sends and the set as its answer;
    - scorer rows: one per insight set of a deal with a recorded outcome whose
      snapshot precedes the close, in the deal-record schema of
      docs/deal-records.md, which `vectoros train scorer` reads.
    """
    sets = ledger.insight_sets(workspace_id, since)
    while True:
        page = list(_take(sets, 500))
        if not page:
            return
        outcomes = ledger.outcomes(workspace_id, [s.deal_id for s in page])
        feedback = {}
        if export_format != ExportFormat.SCORER_ROWS:
            feedback = ledger.feedback_for(workspace_id, [s.id for s in page])
        for row in page:
            line = _export_line(row, export_format, outcomes.get(row.deal_id), feedback.get(row.id, []))
            if line is not None:
                yield line


def _export_line(row: InsightSetRow, export_format: ExportFormat, outcome, feedback) -> str | None:
    if export_format == ExportFormat.SCORER_ROWS:
        if outcome is None:
            return None
        record = snapshot_from_json(row.deal_json)
        closed_at = outcome.closed_at or outcome.recorded_at
        if record.snapshot_at is None or record.snapshot_at > closed_at:
            return None  # a snapshot taken after the close describes the outcome: a leak

        custom_dates = json.loads(row.context_json).get("scorer_custom_dates", [])
        closed = replace(record, outcome=Outcome(outcome.outcome), closed_at=closed_at)
        values = record_to_row(closed, [d for d in custom_dates if d in record.numeric_attributes])
        values["workspace_id"] = row.workspace_id
        return json.dumps({k: v for k, v in values.items() if v != ""}, ensure_ascii=False)

    generated = {
        "insight_set_id": row.id,
        "generator": row.generator,
        "fallback_reason": row.fallback_reason,
        "scorer": {"name": row.scorer_name, "version": row.scorer_version},
        "embedder": {"name": row.embedder_name, "version": row.embedder_version},
        "win_probability": row.win_probability,
        "model_win_probability": row.model_win_probability,
        "win_probability_reasoning": row.reasoning,
        "insights": json.loads(row.insights_json),
    }
    if export_format == ExportFormat.CHAT_FINETUNE:
        ratings = {f.rating for f in feedback}
        if Rating.HELPFUL.value not in ratings or Rating.INCORRECT.value in ratings:
            return None
        from server.engines.claude import chat_messages  # the prompt the Claude generator sends

        answer = {k: generated[k] for k in ("win_probability", "win_probability_reasoning")}
        answer["insights"] = [{k: v for k, v in i.items() if k != "id"} for i in generated["insights"]]
        messages = chat_messages(json.loads(row.context_json))
        messages.append({"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)})
        return json.dumps(
            {"messages": messages, "metadata": {"insight_set_id": row.id, "generator": row.generator}},
            ensure_ascii=False,
        )
    return json.dumps(
        {
            "schema": LABELLED_SCHEMA,
            "workspace_id": row.workspace_id,
            "deal_id": row.deal_id,
            "created_at": _iso(row.created_at),
            "deal_snapshot": json.loads(row.deal_json),
            "context": json.loads(row.context_json),
            "generated": generated,
            "feedback": [
                {
                    "feedback_id": f.id,
                    "insight_id": f.insight_id,
                    "rating": f.rating,
                    "acted_on": f.acted_on,
                    "comment": f.comment,
                    "created_at": _iso(f.created_at),
                }
                for f in feedback
            ],
            "outcome": None if outcome is None else {
                "outcome": outcome.outcome,
                "closed_at": _iso(outcome.closed_at),
                "final_value": outcome.final_value,
            },
        },
        ensure_ascii=False,
    )


# --- small helpers ----------------------------------------------------------------------------


def _clock() -> float:
    """Milliseconds on a monotonic clock."""
    import time

    return time.perf_counter() * 1000.0


def _require(value: str, name: str) -> None:
    if not value:
        raise InvalidInput(name, "required")


def _days(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds() / _DAY


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None


def _round(value: float | None, digits: int = 1) -> float | None:
    return round(value, digits) if value is not None else None


def _rate(stat: RateStat | None) -> dict[str, Any] | None:
    if stat is None or not stat.closed:
        return None
    return {"won": stat.won, "closed": stat.closed, "rate": round(stat.rate or 0.0, 4)}


def _duration(stat: DurationStat | None) -> dict[str, Any] | None:
    if stat is None:
        return None
    return {"n": stat.count, "median": round(stat.median, 1), "p75": round(stat.p75, 1), "p90": round(stat.p90, 1)}
