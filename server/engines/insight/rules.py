"""The rules generator: deterministic insights from the score, the similar closed
deals and the workspace's history. The default generator (no API key needed),
and the fallback of the Claude generator.

Every sentence quotes the numbers it rests on, and each insight cites them by
name (`Evidence.factor_names`, from `InsightContext.evidence_names`) and by
similar deal id. A workspace statistic is quoted only with at least
`MIN_SAMPLE` observations.

Risks:
- `no_recent_activity`: days since the last activity above the workspace norm,
  the 75th percentile of won deals' days per activity (how often won deals were
  touched); with too few won deals, no norm and no insight.
- `stuck_in_stage`: days in the current stage above the workspace's 75th
  percentile of completed stays in that stage.
- `close_date_passed` / `close_date_slipped`: the expected close date is behind
  the request time, or later than in the deal's previous stored snapshot.
- `probability_gap`: the rep's probability at least `PROBABILITY_GAP` from the
  scorer's (above it: a risk; below it: an opportunity).
- `competitor_present`, `single_contact`: with the workspace's win rates with
  and without, when known.

Opportunities: what most similar *won* deals had that this one lacks (more
contacts, demos, meetings or calls; a stage they went through before reaching
this deal's stage), when at least `MIN_SIMILAR_WON` similar deals were won and
at least `OPPORTUNITY_SHARE` of them had it.

One next action (the actions of the most confident findings) and one
prediction (the score, the similar deals' outcomes, the stage's win rate)
close the set.

Confidence, in [0, 1], is a documented function of the numbers: for "x is
above the norm" rules 1 - norm / x (twice the norm gives 0.5); for rules with
a workspace comparison 0.5 plus the difference in win rates; for opportunities
the share of similar won deals that had it; for the prediction the probability
of the more likely outcome. Clipped to [0.3, 0.95] except the prediction.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from server.engines.insight.context import InsightContext, SimilarDeal
from server.engines.insight.history import RateStat, stat_key
from server.engines.insight.types import Evidence, GeneratedInsights, Insight, InsightType, Usage
from vectoros.core.deals import Outcome

# The rules generator's id: in the cache key, the ledger and `GeneratedInsights.generator`.
RULES = "rules"
PROBABILITY_GAP = 0.25
MIN_SIMILAR_WON = 3
OPPORTUNITY_SHARE = 0.6
MAX_OPPORTUNITIES = 3


def _clip(value: float, low: float = 0.3, high: float = 0.95) -> float:
    return min(high, max(low, value))


def pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def days(value: float) -> str:
    if value >= 10:
        amount = f"{value:.0f}"
    else:
        amount = f"{value:.1f}"
    return f"{amount} day" + ("" if amount in ("1", "1.0") else "s")


def rate_text(stat: RateStat) -> str:
    return f"{pct(stat.rate or 0.0)} ({stat.won} of {stat.closed})"


@dataclass(frozen=True)
class _Finding:
    """An insight before it gets its id."""

    type: InsightType
    title: str
    description: str
    confidence: float
    actions: tuple[str, ...]
    factor_names: tuple[str, ...]
    similar_deal_ids: tuple[str, ...] = ()


class RulesGenerator:
    """Deterministic: the same context gives the same insights."""

    id = RULES

    async def generate(self, context: InsightContext) -> GeneratedInsights:
        return self.build(context)

    def build(self, context: InsightContext) -> GeneratedInsights:
        risks = [f for rule in RISK_RULES if (f := rule(context)) is not None]
        gap = probability_gap(context)
        if gap is not None:
            risks.append(gap)
        risks.sort(key=lambda f: -f.confidence)
        opportunities = sorted(similar_won_opportunities(context), key=lambda f: -f.confidence)[:MAX_OPPORTUNITIES]
        findings = [f for f in risks if f.type is InsightType.RISK]
        findings += [f for f in risks if f.type is not InsightType.RISK] + opportunities
        next_step = next_action(findings)
        if next_step is not None:
            findings.append(next_step)
        findings.append(prediction(context))
        insights = tuple(
            Insight(
                id=f"i{index}",
                type=f.type,
                title=f.title,
                description=f.description,
                confidence=round(f.confidence, 4),
                actions=f.actions,
                evidence=Evidence(f.factor_names, f.similar_deal_ids),
            )
            for index, f in enumerate(findings, start=1)
        )
        return GeneratedInsights(
            insights=insights,
            win_probability=context.score.win_probability,
            win_probability_reasoning=reasoning(context),
            generator=RULES,
            usage=Usage(),
        )


# --- risks --------------------------------------------------------------------------------


def no_recent_activity(context: InsightContext) -> _Finding | None:
    norm = context.history.activity_gap_days
    if norm is None or not norm.usable() or norm.p75 <= 0:
        return None
    silent = context.days_since_last_activity
    since_what = "the last logged activity"
    if silent is None:
        silent, since_what = context.days_since_created, "creation, with no activity logged"
    if silent is None or silent <= norm.p75:
        return None
    ratio = silent / norm.p75
    return _Finding(
        type=InsightType.RISK,
        title=f"No activity for {days(silent)}",
        description=(
            f"It has been {days(silent)} since {since_what}. Won deals in this workspace were touched about "
            f"every {days(norm.median)} (median of {norm.count}; 75th percentile {days(norm.p75)}), "
            f"so this silence is {ratio:.1f}x that norm."
        ),
        confidence=_clip(1 - 1 / ratio),
        actions=("Log a call or meeting with the buyer this week to re-establish contact",),
        factor_names=("deal.days_since_last_activity", "workspace.activity_gap_days_won"),
    )


def stuck_in_stage(context: InsightContext) -> _Finding | None:
    stage = context.deal.stage
    stat = context.history.days_in_stage.get(stat_key(stage))
    in_stage = context.days_in_stage
    if stat is None or not stat.usable() or in_stage is None or stat.p75 <= 0 or in_stage <= stat.p75:
        return None
    ratio = in_stage / stat.p75
    return _Finding(
        type=InsightType.RISK,
        title=f"Stuck in {stage} for {days(in_stage)}",
        description=(
            f"The deal entered '{stage}' {days(in_stage)} ago. In this workspace 75% of stays in '{stage}' "
            f"ended within {days(stat.p75)} (median {days(stat.median)}, {stat.count} stays)."
        ),
        confidence=_clip(1 - 1 / ratio),
        actions=(f"Agree the concrete step that moves the deal out of '{stage}', with a date",),
        factor_names=("deal.days_in_stage", "workspace.days_in_stage"),
    )


def _slip_sentence(context: InsightContext) -> tuple[str, float]:
    slipped, on_time = context.history.slipped, context.history.on_time
    if slipped.usable() and on_time.usable():
        return (
            f" Deals here that closed after their expected date were won {rate_text(slipped)}, "
            f"against {rate_text(on_time)} on time.",
            _clip(1 - (slipped.rate or 0.0)),
        )
    return "", 0.6


def close_date_passed(context: InsightContext) -> _Finding | None:
    expected = context.deal.expected_close_at
    if expected is None or expected >= context.now:
        return None
    overdue = (context.now - expected).total_seconds() / 86_400
    sentence, confidence = _slip_sentence(context)
    return _Finding(
        type=InsightType.RISK,
        title="Expected close date has passed",
        description=f"The expected close date {expected.date().isoformat()} passed {days(overdue)} ago.{sentence}",
        confidence=confidence,
        actions=("Confirm the buyer's decision date and update the expected close date",),
        factor_names=("deal.expected_close_at", "workspace.win_rate_slipped", "workspace.win_rate_on_time"),
    )


def close_date_slipped(context: InsightContext) -> _Finding | None:
    before, now = context.previous_expected_close_at, context.deal.expected_close_at
    if before is None or now is None or now <= before:
        return None
    moved = (now - before).total_seconds() / 86_400
    if moved < 1:
        return None
    sentence, confidence = _slip_sentence(context)
    when = context.previous_snapshot_at.date().isoformat() if context.previous_snapshot_at else "the previous analysis"
    return _Finding(
        type=InsightType.RISK,
        title=f"Close date slipped by {days(moved)}",
        description=(
            f"The expected close date moved from {before.date().isoformat()} to {now.date().isoformat()} "
            f"({days(moved)} later) since the analysis of {when}.{sentence}"
        ),
        confidence=confidence,
        actions=("Ask what changed on the buyer's side and re-confirm the decision process",),
        factor_names=("deal.expected_close_at", "deal.previous_expected_close_at", "workspace.win_rate_slipped"),
    )


def probability_gap(context: InsightContext) -> _Finding | None:
    rep = context.deal.probability
    model = context.score.win_probability
    if rep is None or abs(rep - model) < PROBABILITY_GAP:
        return None
    points = abs(rep - model) * 100
    if rep > model:
        return _Finding(
            type=InsightType.RISK,
            title="Rep forecast well above the model",
            description=(
                f"The rep's probability is {pct(rep)}; the scorer's calibrated probability is {pct(model)}, "
                f"{points:.0f} points lower."
            ),
            confidence=_clip(0.5 + abs(rep - model) / 2),
            actions=("Review the forecast: name the evidence behind the rep's probability",),
            factor_names=("deal.rep_probability", "score.win_probability"),
        )
    return _Finding(
        type=InsightType.OPPORTUNITY,
        title="Model sees more upside than the rep",
        description=(
            f"The scorer's calibrated probability is {pct(model)}, {points:.0f} points above the rep's {pct(rep)}."
        ),
        confidence=_clip(0.5 + abs(rep - model) / 2),
        actions=("Revisit the forecast category: the deal may deserve more attention",),
        factor_names=("deal.rep_probability", "score.win_probability"),
    )


def competitor_present(context: InsightContext) -> _Finding | None:
    if context.deal.competitor_present is not True:
        return None
    with_, without = context.history.with_competitor, context.history.without_competitor
    description = "A competitor is known to be in the deal."
    confidence = 0.5
    similar_ids: tuple[str, ...] = ()
    names = ["deal.competitor_present"]
    if with_.usable() and without.usable():
        description += f" Deals here with a competitor were won {rate_text(with_)}, without {rate_text(without)}."
        confidence = _clip(0.5 + (without.rate or 0.0) - (with_.rate or 0.0))
        names += ["workspace.win_rate_with_competitor", "workspace.win_rate_without_competitor"]
    else:
        contested = [d for d in context.similar if d.competitor_present]
        won = sum(d.outcome is Outcome.WON for d in contested)
        description += (
            f" {len(contested)} of {len(context.similar)} similar closed deals also had one"
            + (f"; {won} of those were won." if contested else ".")
        )
        similar_ids = tuple(d.deal_id for d in contested)
        names.append("similar_closed_deals")
    return _Finding(
        type=InsightType.RISK,
        title="Competitor in the deal",
        description=description,
        confidence=confidence,
        actions=("Map the competitor's position with the champion and prepare a differentiation plan",),
        factor_names=tuple(names),
        similar_deal_ids=similar_ids,
    )


def single_contact(context: InsightContext) -> _Finding | None:
    if context.deal.contact_count > 1:
        return None
    one, many = context.history.by_contacts.get("1"), context.history.by_contacts.get("3+")
    description = f"Only {context.deal.contact_count} contact is engaged at the buyer."
    confidence = 0.5
    if one is not None and many is not None and one.usable() and many.usable():
        description += f" Deals here with one contact were won {rate_text(one)}, with three or more {rate_text(many)}."
        confidence = _clip(0.5 + (many.rate or 0.0) - (one.rate or 0.0))
    return _Finding(
        type=InsightType.RISK,
        title="Single-threaded deal",
        description=description,
        confidence=confidence,
        actions=("Ask the contact to introduce the economic buyer and a technical evaluator",),
        factor_names=("deal.contact_count", "workspace.win_rate_by_contacts"),
    )


RISK_RULES: tuple[Callable[[InsightContext], _Finding | None], ...] = (
    no_recent_activity,
    stuck_in_stage,
    close_date_passed,
    close_date_slipped,
    competitor_present,
    single_contact,
)


# --- opportunities from similar won deals ---------------------------------------------------


@dataclass(frozen=True)
class _Signal:
    name: str
    noun: str
    evidence: str
    value: Callable[[SimilarDeal], int]
    action: str


SIGNALS = (
    _Signal("contacts", "contacts", "deal.contact_count", lambda d: d.contact_count,
            "Engage more stakeholders: aim for {median} contacts, as similar won deals had"),
    _Signal("demos", "demos", "deal.activity_counts.demos", lambda d: d.activity_counts.get("demos", 0),
            "Schedule a product demo for the buying team"),
    _Signal("meetings", "meetings", "deal.activity_counts.meetings", lambda d: d.activity_counts.get("meetings", 0),
            "Book a meeting with the decision makers"),
    _Signal("calls", "calls", "deal.activity_counts.calls", lambda d: d.activity_counts.get("calls", 0),
            "Follow up by phone: similar won deals had a median of {median} calls"),
)


def _deal_value(context: InsightContext, signal: _Signal) -> int:
    if signal.name == "contacts":
        return context.deal.contact_count
    return int(context.deal.activity_counts.get(signal.name, 0))


def similar_won_opportunities(context: InsightContext) -> list[_Finding]:
    won = [d for d in context.similar if d.outcome is Outcome.WON]
    lost = [d for d in context.similar if d.outcome is Outcome.LOST]
    if len(won) < MIN_SIMILAR_WON:
        return []
    findings = []
    for signal in SIGNALS:
        mine = _deal_value(context, signal)
        ahead = [d for d in won if signal.value(d) > mine]
        share = len(ahead) / len(won)
        won_median = statistics.median(signal.value(d) for d in won)
        lost_median = statistics.median(signal.value(d) for d in lost) if lost else None
        # Only what separates winners: more than this deal, and not equally common among losers.
        if share < OPPORTUNITY_SHARE or won_median <= mine or (lost_median is not None and lost_median >= won_median):
            continue
        description = (
            f"{len(ahead)} of {len(won)} similar won deals had more than this deal's {mine} {signal.noun} "
            f"(median {won_median:g})"
        )
        description += f"; similar lost deals had a median of {lost_median:g}." if lost_median is not None else "."
        findings.append(
            _Finding(
                type=InsightType.OPPORTUNITY,
                title=f"Similar won deals had more {signal.noun}",
                description=description,
                confidence=_clip(share),
                actions=(signal.action.format(median=f"{won_median:g}"),),
                factor_names=(signal.evidence, "similar_closed_deals"),
                similar_deal_ids=tuple(d.deal_id for d in ahead),
            )
        )
    findings.extend(_missing_stages(context, won, lost))
    return findings


def _missing_stages(context: InsightContext, won: Sequence[SimilarDeal], lost: Sequence[SimilarDeal]) -> list[_Finding]:
    current = stat_key(context.deal.stage)
    reached = {stat_key(c.stage) for c in context.deal.stage_history} | {current}
    if not current:
        return []

    def before_current(deal: SimilarDeal) -> set[str]:
        if current not in deal.stages:
            return set()
        return set(deal.stages[: deal.stages.index(current)])

    candidates: dict[str, list[SimilarDeal]] = {}
    for deal in won:
        for stage in before_current(deal) - reached:
            candidates.setdefault(stage, []).append(deal)
    findings = []
    for stage, deals in sorted(candidates.items()):
        share = len(deals) / len(won)
        lost_share = sum(stage in d.stages for d in lost) / len(lost) if lost else None
        if share < OPPORTUNITY_SHARE or (lost_share is not None and lost_share >= share):
            continue
        description = f"{len(deals)} of {len(won)} similar won deals went through '{stage}' before '{current}'"
        if lost_share is not None:
            description += f", against {pct(lost_share)} of similar lost deals"
        description += "; this deal did not."
        findings.append(
            _Finding(
                type=InsightType.OPPORTUNITY,
                title=f"Winners went through {stage}",
                description=description,
                confidence=_clip(share),
                actions=(f"Plan a '{stage}' step with the buyer",),
                factor_names=("deal.stage_history", "similar_closed_deals"),
                similar_deal_ids=tuple(d.deal_id for d in deals),
            )
        )
    return findings


# --- the closing insights ----------------------------------------------------------------------


def next_action(findings: Sequence[_Finding]) -> _Finding | None:
    ranked = sorted((f for f in findings if f.actions), key=lambda f: -f.confidence)
    if not ranked:
        return None
    top = ranked[0]
    actions = tuple(dict.fromkeys(a for f in ranked[:3] for a in f.actions))
    return _Finding(
        type=InsightType.NEXT_ACTION,
        title=actions[0],
        description=f"Addresses the most confident finding, \"{top.title}\" (confidence {top.confidence:.2f}).",
        confidence=top.confidence,
        actions=actions,
        factor_names=tuple(dict.fromkeys(n for f in ranked[:3] for n in f.factor_names)),
        similar_deal_ids=tuple(dict.fromkeys(i for f in ranked[:3] for i in f.similar_deal_ids)),
    )


def _weighted_win_rate(similar: Sequence[SimilarDeal]) -> float | None:
    weights = [(max(d.similarity, 0.0), d.outcome is Outcome.WON) for d in similar]
    total = sum(w for w, _ in weights)
    if total <= 0:
        return None
    return sum(w for w, won in weights if won) / total


def prediction(context: InsightContext) -> _Finding:
    p = context.score.win_probability
    sentences = [f"The scorer puts the win chance at {pct(p)} (risk {context.score.risk_level})."]
    names = ["score.win_probability"]
    won = sum(d.outcome is Outcome.WON for d in context.similar)
    if context.similar:
        weighted = _weighted_win_rate(context.similar)
        sentence = f"{won} of {len(context.similar)} similar closed deals were won"
        sentence += f" (similarity-weighted {pct(weighted)})." if weighted is not None else "."
        sentences.append(sentence)
        names.append("similar_closed_deals")
    stage = context.history.by_stage.get(stat_key(context.deal.stage))
    if stage is not None and stage.usable():
        sentences.append(f"This workspace won {rate_text(stage)} of closed deals that reached '{context.deal.stage}'.")
        names.append("workspace.win_rate_stage")
    return _Finding(
        type=InsightType.PREDICTION,
        title=f"{pct(p)} chance to win",
        description=" ".join(sentences),
        confidence=max(p, 1 - p),
        actions=(),
        factor_names=tuple(names),
        similar_deal_ids=tuple(d.deal_id for d in context.similar),
    )


def reasoning(context: InsightContext) -> str:
    score = context.score
    scorer = f"{score.scorer.name} v{score.scorer.version}"
    text = f"Calibrated probability of scorer {scorer}: {pct(score.win_probability)}."
    factors = sorted(score.factors, key=lambda f: -abs(f.contribution))[:3]
    if factors:
        parts = [
            f"{f.feature} = {f.value_text} ({'raises' if f.contribution > 0 else 'lowers'} the log-odds by "
            f"{abs(f.contribution):.2f})"
            for f in factors
        ]
        text += " Largest factors: " + "; ".join(parts) + "."
    return text
