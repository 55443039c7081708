"""Synthetic deal histories for training and tests (`vectoros synth`).

Each deal gets an industry, a region, a rep, a lead source, a size, a stage path
with durations, activities over time, a competitor or not, and notes. Whether it
is won depends on those (and on hidden engagement and champion variables that
the features only see through activity and notes), with noise, so a good model
reaches a believable score, not a perfect one. A deal created near the end of
the period may still be open.

Each closed deal yields one snapshot at a random moment of its life: the row
describes the deal as of then (stage, activity counts, notes so far), and its
outcome and close date are the labels. An open deal's snapshot is the end of
the period. One custom date column, `first_meeting_at`, is the real date of the
first meeting even when it comes after the snapshot: the feature code must
ignore it in that case (it is the kind of leaky column CRMs export).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np

from vectoros.core.deals import DealRecord, Outcome, StageChange

STAGES = ("prospecting", "discovery", "demo", "proposal", "negotiation")
DEFAULT_END = datetime(2025, 6, 30, tzinfo=UTC)
DATE_COLUMNS = ("first_meeting_at",)

_INDUSTRIES = {  # name: (share, win effect, median value in USD)
    "software": (0.24, 0.35, 60_000),
    "fintech": (0.12, 0.0, 90_000),
    "healthcare": (0.12, -0.35, 120_000),
    "manufacturing": (0.14, -0.1, 80_000),
    "retail": (0.12, 0.15, 40_000),
    "logistics": (0.09, -0.2, 70_000),
    "education": (0.09, 0.25, 25_000),
    "media": (0.08, 0.0, 35_000),
}
_REGIONS = {"na": (0.45, 0.1), "emea": (0.3, -0.05), "apac": (0.15, -0.15), "latam": (0.1, 0.0)}
_SOURCES = {"inbound": (0.3, 0.3), "outbound": (0.3, -0.45), "partner": (0.15, 0.2),
            "webinar": (0.15, 0.0), "referral": (0.1, 0.6)}
_ACTIVITY_SHARES = {"emails": 0.45, "calls": 0.2, "meetings": 0.14, "demos": 0.05, "notes": 0.11, "tasks": 0.05}
_STAGE_PROBABILITY = (0.1, 0.2, 0.35, 0.55, 0.75)
_NEUTRAL_NOTES = (
    "intro call held", "sent pricing overview", "follow-up scheduled", "shared case study",
    "discussed integration", "security questionnaire received", "requested a trial", "met the it team",
)
_POSITIVE_NOTES = ("strong champion in ops", "budget approved for this quarter", "exec sponsor joined the call",
                   "references checked", "verbal yes from the buyer")
_NEGATIVE_NOTES = ("pricing concerns raised", "prospect went dark", "project on hold after reorg",
                   "competitor offering a discount", "decision delayed to next quarter")


def _pick(rng: np.random.Generator, table: dict) -> str:
    names = list(table)
    shares = np.array([table[n][0] for n in names])
    return names[rng.choice(len(names), p=shares / shares.sum())]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def synth_deals(deals: int, seed: int = 0, end: datetime = DEFAULT_END, years: float = 2.0) -> list[DealRecord]:
    """`deals` synthetic deal snapshots created over `years` before `end`, reproducible by `seed`."""
    rng = np.random.default_rng(seed)
    reps = [f"rep-{i:02d}" for i in range(1, 26)]
    rep_skill = dict(zip(reps, rng.normal(0.0, 0.45, len(reps)), strict=True))
    rep_optimism = dict(zip(reps, rng.normal(0.05, 0.08, len(reps)), strict=True))
    span_days = 365.25 * years
    records = []
    for index in range(deals):
        created = end - timedelta(days=float(rng.uniform(5.0, span_days)))
        created = created.replace(microsecond=0)
        industry = _pick(rng, _INDUSTRIES)
        region = _pick(rng, _REGIONS)
        source = _pick(rng, _SOURCES)
        rep = reps[rng.integers(len(reps))]
        employees = int(np.clip(rng.lognormal(math.log(400), 1.3), 5, 200_000))
        size_factor = (employees / 400) ** 0.35
        value = round(float(_INDUSTRIES[industry][2] * size_factor * rng.lognormal(0.0, 0.5)), -2)
        seats = max(5, int(employees * rng.uniform(0.05, 0.4)))
        competitor = bool(rng.random() < 0.4)
        competitor_known = rng.random() > 0.12
        engagement = float(rng.normal())
        champion = bool(rng.random() < _sigmoid(0.7 * engagement - 0.6))
        contacts = int(rng.poisson(1.0 + 2.2 * _sigmoid(engagement + 0.3 * math.log(size_factor + 1e-9))))

        # How far the deal is from the industry's usual size: very large deals
        # are hard to win and tiny ones are often not serious (a sweet spot).
        size_gap = math.log(value / _INDUSTRIES[industry][2])
        small_company = employees < 1000
        logit = (
            -0.1
            + _INDUSTRIES[industry][1] + _REGIONS[region][1] + _SOURCES[source][1]
            # Reps specialize: a strong SMB closer is not a strong enterprise one.
            + rep_skill[rep] * (1.0 if small_company else -0.6)
            - (0.9 if competitor and size_gap > 0.3 else 0.35 if competitor else 0.0)
            - (0.45 if competitor and region == "emea" else 0.0)
            - 1.1 * max(0.0, size_gap - 0.3)
            - 0.8 * max(0.0, -size_gap - 0.9)
            + 0.9 * math.tanh(engagement)
            + 0.8 * champion * (1.6 if source in ("referral", "partner") else 1.0)
            + 0.35 * min(contacts, 6) / 3
            + rng.normal(0.0, 0.7)
        )
        won = bool(rng.random() < _sigmoid(logit))

        # The stage path: won deals go through every stage; lost ones stop early,
        # more often in the first stages.
        skip_demo = rng.random() < 0.2
        if won:
            last = len(STAGES) - 1
        else:
            last = int(rng.choice(len(STAGES), p=[0.24, 0.26, 0.2, 0.18, 0.12]))
        path = [s for i, s in enumerate(STAGES[: last + 1]) if not (skip_demo and s == "demo" and i != last)]
        if len(path) >= 4 and rng.random() < 0.06:
            path.insert(3, path[1])  # pushed back a stage, then forward again
        slowness = size_factor ** 0.5 * rng.lognormal(0.0, 0.3)
        durations = [float(rng.lognormal(math.log(9.0), 0.5) * slowness) for _ in path]
        if not won:
            durations[-1] *= 2.2  # a losing deal stalls in its last stage
        entered = [created]
        for days in durations[:-1]:
            entered.append(entered[-1] + timedelta(days=days))
        closed = entered[-1] + timedelta(days=durations[-1])
        is_open = closed > end
        snapshot = end if is_open else created + (closed - created) * float(rng.uniform(0.05, 0.95))
        snapshot = snapshot.replace(microsecond=0)
        life_days = (snapshot - created).total_seconds() / 86400.0

        # Activity: a Poisson process driven by engagement; a lost deal goes
        # quiet in the last third of its life.
        rate = 0.45 * math.exp(0.45 * engagement) * (1.0 + 0.1 * contacts)
        total_days = (min(closed, end) - created).total_seconds() / 86400.0
        times = np.sort(rng.uniform(0.0, total_days, rng.poisson(rate * total_days)))
        if not won and not is_open:
            keep = (times < total_days * 0.6) | (rng.random(times.size) < 0.15)
            times = times[keep]
        kinds = rng.choice(list(_ACTIVITY_SHARES), size=times.size, p=list(_ACTIVITY_SHARES.values()))
        seen = times <= life_days
        counts = {k: int(np.sum(seen & (kinds == k))) for k in _ACTIVITY_SHARES}
        last_activity = created + timedelta(days=float(times[seen][-1])) if seen.any() else None
        meetings = times[kinds == "meetings"]

        history = tuple(
            StageChange(stage, at.replace(microsecond=0)) for stage, at in zip(path, entered, strict=True)
            if at <= snapshot
        )
        stage = history[-1].stage if history else path[0]
        stage_index = STAGES.index(stage)
        probability = None
        if rng.random() > 0.25:
            guess = _STAGE_PROBABILITY[stage_index] + rep_optimism[rep] + rng.normal(0, 0.08)
            probability = round(float(np.clip(guess, 0.05, 0.95)), 2)

        notes = list(rng.choice(_NEUTRAL_NOTES, size=rng.integers(0, 3), replace=False))
        if champion and rng.random() < 0.5 * min(1.0, life_days / 20.0):
            notes.append(str(rng.choice(_POSITIVE_NOTES)))
        if rng.random() < (0.3 if not won else 0.08) * min(1.0, life_days / 30.0) + (0.15 if competitor else 0.0):
            notes.append(str(rng.choice(_NEGATIVE_NOTES)))
        rng.shuffle(notes)

        planned = float(rng.lognormal(math.log(55.0), 0.35) * slowness * (1.0 - rep_optimism[rep]))
        categorical = {"lead_source": source}
        numeric: dict[str, float] = {"seats": float(seats), "employees": float(employees)}
        if meetings.size:
            numeric["first_meeting_at"] = (created + timedelta(days=float(meetings[0]))).replace(
                microsecond=0
            ).timestamp()

        records.append(
            DealRecord(
                deal_id=f"D{index:06d}",
                workspace_id="ws-synth",
                name=f"{industry.title()} deal {index}",
                company=f"Company {rng.integers(1, max(2, deals // 3))}",
                industry=industry,
                region=region,
                notes="; ".join(notes),
                value=value,
                currency="EUR" if region == "emea" else "USD",
                stage=stage,
                probability=probability,
                created_at=created,
                expected_close_at=(created + timedelta(days=planned)).replace(microsecond=0),
                stage_entered_at=history[-1].entered_at if history else created,
                stage_history=history,
                activity_counts=counts,
                last_activity_at=last_activity.replace(microsecond=0) if last_activity else None,
                competitor_present=competitor if competitor_known else None,
                outcome=Outcome.OPEN if is_open else Outcome.WON if won else Outcome.LOST,
                closed_at=None if is_open else closed.replace(microsecond=0),
                owner_id=rep,
                contact_count=contacts,
                numeric_attributes=numeric,
                categorical_attributes=categorical,
                snapshot_at=snapshot,
            )
        )
    return records
