"""The context of one insight request: everything a generator may use about a
deal (its snapshot, the scorer's answer, the similar closed deals, the
workspace's history), its `document()` (the plain JSON Claude reads and the
ledger keeps), and the `InsightGenerator` protocol that turns it into insights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from server.engines.insight.dates import days_between, iso
from server.engines.insight.history import DurationStat, RateStat, WorkspaceHistory, size_band, stages_of, stat_key
from server.engines.insight.types import GeneratedInsights
from vectoros.core.deals import ACTIVITY_TYPES, DealRecord, Outcome

# The model registry's name of the scorer whose answer the context carries.
SCORER = "scorer"


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
            stages=tuple(dict.fromkeys(stat_key(s) for s in stages_of(record))),
            cycle_days=days_between(record.closed_at, record.created_at),
        )


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
        return days_between(self.now, self.deal.last_activity_at)

    @property
    def days_since_created(self) -> float | None:
        return days_between(self.now, self.deal.created_at)

    @property
    def stage_entered_at(self) -> datetime | None:
        if self.deal.stage_entered_at is not None:
            return self.deal.stage_entered_at
        same = [c.entered_at for c in self.deal.stage_history if stat_key(c.stage) == stat_key(self.deal.stage)]
        return max(same) if same else None

    @property
    def days_in_stage(self) -> float | None:
        return days_between(self.now, self.stage_entered_at)

    @property
    def days_to_expected_close(self) -> float | None:
        return days_between(self.deal.expected_close_at, self.now)

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
        industry, stage, band = stat_key(deal.industry), stat_key(deal.stage), size_band(deal.value)
        low, high = self.allowed_win_probability()
        return {
            "as_of": iso(self.now),
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
                "created_at": iso(deal.created_at),
                "expected_close_at": iso(deal.expected_close_at),
                "previous_expected_close_at": iso(self.previous_expected_close_at),
                "stage_entered_at": iso(self.stage_entered_at),
                "last_activity_at": iso(deal.last_activity_at),
                "days_since_last_activity": _round(self.days_since_last_activity),
                "days_in_stage": _round(self.days_in_stage),
                "days_to_expected_close": _round(self.days_to_expected_close),
                "stage_history": [[c.stage, iso(c.entered_at)] for c in deal.stage_history],
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
