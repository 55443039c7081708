"""The rules generator on hand-built contexts: each rule fires on the numbers it
quotes (computed here independently from the same deals) and stays silent
otherwise; evidence names and similar deal ids always come from the context."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from server.engines.insight import (
    MIN_SAMPLE,
    InsightContext,
    InsightType,
    ModelRef,
    ScoreFactor,
    ScoreView,
    SimilarDeal,
    StoredDeal,
    WorkspaceHistory,
    summarize_history,
)
from server.engines.insight.rules import RulesGenerator, days, pct
from vectoros.core.deals import DealRecord, Outcome, StageChange

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def closed_deal(i: int, won: bool, *, created_days_ago: float = 120, cycle: float = 60, activities: int = 20,
                proposal_days: float = 10, competitor: bool | None = None, contacts: int = 3,
                slipped: bool | None = None) -> DealRecord:
    created = NOW - created_days_ago * DAY
    proposal = created + (cycle - proposal_days) * DAY
    closed = created + cycle * DAY
    expected = None
    if slipped is not None:
        expected = closed - 10 * DAY if slipped else closed + 5 * DAY
    return DealRecord(
        deal_id=f"h{i}",
        workspace_id="acme",
        industry="software",
        stage="proposal",
        value=40_000,
        created_at=created,
        stage_history=(StageChange("discovery", created), StageChange("proposal", proposal)),
        activity_counts={"emails": activities},
        competitor_present=competitor,
        contact_count=contacts,
        outcome=Outcome.WON if won else Outcome.LOST,
        closed_at=closed,
        expected_close_at=expected,
    )


def open_deal(**changes) -> DealRecord:
    record = DealRecord(
        deal_id="d-open",
        workspace_id="acme",
        name="Open deal",
        industry="software",
        stage="proposal",
        value=45_000,
        currency="USD",
        created_at=NOW - 30 * DAY,
        stage_entered_at=NOW - 2 * DAY,
        stage_history=(StageChange("discovery", NOW - 30 * DAY), StageChange("proposal", NOW - 2 * DAY)),
        last_activity_at=NOW - 1 * DAY,
        expected_close_at=NOW + 20 * DAY,
        contact_count=4,
        competitor_present=False,
        probability=0.5,
        activity_counts={"emails": 10, "calls": 3, "meetings": 2, "demos": 1},
        snapshot_at=NOW,
    )
    return replace(record, **changes)


def history_of(records) -> WorkspaceHistory:
    return summarize_history([StoredDeal.from_record(r) for r in records])


def context(deal: DealRecord, history: WorkspaceHistory | None = None, similar=(), win_probability: float = 0.5,
            **changes) -> InsightContext:
    made = InsightContext(
        deal=deal,
        now=NOW,
        score=ScoreView(
            win_probability=win_probability,
            risk_level="medium",
            factors=(ScoreFactor("days_in_stage", "2", -0.3), ScoreFactor("industry", "software", 0.2)),
            scorer=ModelRef("scorer", 3),
        ),
        embedder=ModelRef("embedder", 1),
        similar=tuple(similar),
        history=history or WorkspaceHistory(),
    )
    return replace(made, **changes)


def similar(i: int, won: bool, *, demos: int = 0, contacts: int = 4, stages=("discovery", "proposal"),
            score: float = 0.8) -> SimilarDeal:
    return SimilarDeal(
        deal_id=f"s{i}", similarity=score, outcome=Outcome.WON if won else Outcome.LOST, industry="software",
        stage="proposal", value=40_000, contact_count=contacts, competitor_present=False,
        activity_counts={"emails": 5, "calls": 3, "meetings": 2, "demos": demos, "notes": 0, "tasks": 0},
        stages=tuple(stages), cycle_days=50.0,
    )


def generate(ctx: InsightContext):
    return RulesGenerator().build(ctx)


def by_title(result, fragment: str):
    found = [i for i in result.insights if fragment.lower() in i.title.lower()]
    return found[0] if found else None


def check_well_formed(result, ctx: InsightContext) -> None:
    names = ctx.evidence_names()
    ids = {d.deal_id for d in ctx.similar}
    assert len({i.id for i in result.insights}) == len(result.insights)
    for insight in result.insights:
        assert 0.0 <= insight.confidence <= 1.0
        assert set(insight.evidence.factor_names) <= names, insight
        assert set(insight.evidence.similar_deal_ids) <= ids, insight
        assert insight.evidence.factor_names or insight.evidence.similar_deal_ids
        # Every description quotes at least one number.
        assert re.search(r"\d", insight.description), insight.description
    assert result.insights[-1].type is InsightType.PREDICTION
    assert result.win_probability == ctx.score.win_probability
    assert result.generator == "rules" and result.fallback_reason == ""


def test_healthy_deal_gives_only_the_prediction():
    ctx = context(open_deal())
    result = generate(ctx)
    check_well_formed(result, ctx)
    assert [i.type for i in result.insights] == [InsightType.PREDICTION]
    assert pct(0.5) in result.insights[0].title
    assert "scorer v3: 50%" in result.win_probability_reasoning


def test_no_recent_activity_against_won_deals_cadence():
    # Won deals: cycles of 60 days with 10, 20, ..., 80 activities; lost ones do not count.
    won = [closed_deal(i, True, activities=10 * (i + 1)) for i in range(8)]
    lost = [closed_deal(100 + i, False, activities=1) for i in range(5)]
    history = history_of(won + lost)
    gaps = np.array([60 / (10 * (i + 1)) for i in range(8)])
    p75, median = np.percentile(gaps, 75), np.median(gaps)
    silent = 3 * p75
    ctx = context(open_deal(last_activity_at=NOW - silent * DAY), history)
    result = generate(ctx)
    check_well_formed(result, ctx)
    insight = by_title(result, "No activity")
    assert insight.type is InsightType.RISK
    assert days(silent) in insight.title
    assert days(p75) in insight.description and days(median) in insight.description
    assert "median of 8" in insight.description
    assert insight.confidence == pytest.approx(1 - 1 / 3, abs=1e-3)
    # Just under the norm: silent.
    quiet = context(open_deal(last_activity_at=NOW - 0.9 * p75 * DAY), history)
    assert by_title(generate(quiet), "No activity") is None
    # Too few won deals for a norm: no claim.
    thin = history_of(won[: MIN_SAMPLE - 1])
    assert by_title(generate(context(open_deal(last_activity_at=NOW - 99 * DAY), thin)), "No activity") is None


def test_stuck_in_stage_past_the_75th_percentile():
    stays = [4, 6, 8, 10, 12, 14, 30, 40]
    deals = [closed_deal(i, i % 2 == 0, proposal_days=d) for i, d in enumerate(stays)]
    history = history_of(deals)
    p75 = float(np.percentile(stays, 75))
    assert history.days_in_stage["proposal"].p75 == pytest.approx(p75)
    ctx = context(open_deal(stage_entered_at=NOW - 2 * p75 * DAY), history)
    insight = by_title(generate(ctx), "Stuck in proposal")
    assert insight is not None and days(p75) in insight.description
    assert f"{len(stays)} stays" in insight.description
    assert insight.confidence == pytest.approx(0.5, abs=1e-3)
    assert by_title(generate(context(open_deal(stage_entered_at=NOW - p75 * 0.5 * DAY), history)), "Stuck") is None


def test_close_date_passed_and_slipped_quote_slippage_win_rates():
    deals = [closed_deal(i, i < 2, slipped=True) for i in range(6)]  # 2 of 6 slipped deals won
    deals += [closed_deal(10 + i, i < 4, slipped=False) for i in range(6)]  # 4 of 6 on time won
    history = history_of(deals)
    ctx = context(open_deal(expected_close_at=NOW - 12 * DAY), history)
    result = generate(ctx)
    check_well_formed(result, ctx)
    passed = by_title(result, "close date has passed")
    assert "passed 12 days ago" in passed.description
    assert "33% (2 of 6)" in passed.description and "67% (4 of 6)" in passed.description
    assert passed.confidence == pytest.approx(1 - 2 / 6, abs=1e-3)
    moved = context(
        open_deal(expected_close_at=NOW + 40 * DAY), history,
        previous_expected_close_at=NOW + 10 * DAY, previous_snapshot_at=NOW - 7 * DAY,
    )
    slipped = by_title(generate(moved), "slipped")
    assert "30 days later" in slipped.description
    assert (NOW - 7 * DAY).date().isoformat() in slipped.description


def test_rep_probability_far_from_the_model():
    high = generate(context(open_deal(probability=0.8), win_probability=0.35))
    risk = by_title(high, "above the model")
    assert risk.type is InsightType.RISK and "80%" in risk.description and "45 points" in risk.description
    low = generate(context(open_deal(probability=0.1), win_probability=0.6))
    assert by_title(low, "more upside").type is InsightType.OPPORTUNITY
    assert by_title(generate(context(open_deal(probability=0.55), win_probability=0.4)), "model") is None


def test_competitor_and_single_contact_with_workspace_rates():
    deals = [closed_deal(i, i < 2, competitor=True, contacts=1) for i in range(8)]
    deals += [closed_deal(20 + i, i < 6, competitor=False, contacts=3) for i in range(8)]
    history = history_of(deals)
    ctx = context(open_deal(competitor_present=True, contact_count=1), history)
    result = generate(ctx)
    check_well_formed(result, ctx)
    competitor = by_title(result, "Competitor")
    assert "25% (2 of 8)" in competitor.description and "75% (6 of 8)" in competitor.description
    assert competitor.confidence == pytest.approx(0.95)  # 0.5 + 0.5, clipped
    single = by_title(result, "Single-threaded")
    assert "Only 1 contact" in single.description and "25% (2 of 8)" in single.description
    # Unknown competitor: no claim either way.
    assert by_title(generate(context(open_deal(competitor_present=None), history)), "Competitor") is None
    # Too few deals to compare: the similar deals are quoted instead.
    contested = [replace(similar(i, i == 0), competitor_present=True) for i in range(3)] + [similar(9, True)]
    thin = context(open_deal(competitor_present=True), similar=contested)
    insight = by_title(generate(thin), "Competitor")
    check_well_formed(generate(thin), thin)
    assert "3 of 4 similar closed deals also had one; 1 of those were won." in insight.description
    assert insight.evidence.similar_deal_ids == ("s0", "s1", "s2")


def test_opportunities_from_what_similar_won_deals_had():
    won = [similar(i, True, demos=2 + i % 2, score=0.9 - i / 100) for i in range(5)]
    won.append(similar(5, True, demos=0))
    lost = [similar(10 + i, False, demos=0) for i in range(3)]
    ctx = context(open_deal(activity_counts={"emails": 3, "demos": 0}), similar=won + lost)
    result = generate(ctx)
    check_well_formed(result, ctx)
    demos = by_title(result, "more demos")
    assert demos.type is InsightType.OPPORTUNITY
    assert demos.evidence.similar_deal_ids == tuple(f"s{i}" for i in range(5))
    assert "5 of 6 similar won deals" in demos.description and "median of 0" in demos.description
    assert demos.confidence == pytest.approx(5 / 6, abs=1e-3)
    # Demos the losers had as much as the winners are no differentiator.
    even = [similar(10 + i, False, demos=3) for i in range(3)]
    assert by_title(generate(context(open_deal(activity_counts={"demos": 0}), similar=won + even)), "demos") is None
    # Next action comes from the most confident findings.
    action = next(i for i in result.insights if i.type is InsightType.NEXT_ACTION)
    assert action.actions and action.confidence == max(i.confidence for i in result.insights[:-2])


def test_missing_stage_that_winners_went_through():
    path = ("discovery", "technical review", "proposal")
    won = [similar(i, True, stages=path) for i in range(4)]
    lost = [similar(10 + i, False, stages=("discovery", "proposal")) for i in range(3)]
    ctx = context(open_deal(), similar=won + lost)
    insight = by_title(generate(ctx), "technical review")
    assert insight is not None and "4 of 4 similar won deals" in insight.description
    assert "0% of similar lost deals" in insight.description
    # A stage after the deal's current one is the future, not a gap.
    early = context(open_deal(stage="discovery", stage_history=()), similar=won + lost)
    assert by_title(generate(early), "technical review") is None


def test_prediction_and_determinism():
    won = [similar(i, True, score=0.9) for i in range(3)]
    lost = [similar(10, False, score=0.3)]
    deals = [closed_deal(i, i < 3) for i in range(10)]
    ctx = context(open_deal(), history_of(deals), similar=won + lost, win_probability=0.42)
    first, second = generate(ctx), generate(ctx)
    assert first == second
    prediction = first.insights[-1]
    assert "42%" in prediction.title
    assert "3 of 4 similar closed deals were won (similarity-weighted 90%)" in prediction.description
    assert "30% (3 of 10)" in prediction.description
    assert prediction.confidence == pytest.approx(0.58)
