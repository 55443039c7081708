"""Deals the client tests store and ask about."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vectoros_client import ActivityCounts, Deal, Outcome, StageChange

NOW = datetime(2026, 11, 1, tzinfo=UTC)
QUARTER = (datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 4, 1, tzinfo=UTC))

_NAMES = [
    ("Acme analytics renewal", "software", "renewal with procurement, security review passed"),
    ("Globex data platform", "software", "new platform, champion in finance, competitor shortlisted"),
    ("Initech warehouse move", "logistics", "migration off on-prem warehouse, CFO sponsor"),
    ("Umbrella pilot", "healthcare", "pilot in one clinic, legal review slow"),
    ("Stark expansion", "manufacturing", "expansion to three plants, budget approved"),
    ("Wayne logistics suite", "logistics", "champion left, security review requested"),
]


def history(prefix: str = "h") -> list[Deal]:
    """Six deals: two won, two lost, two open, with every kind of field set."""
    deals = []
    for index, (name, industry, notes) in enumerate(_NAMES):
        outcome = (Outcome.WON, Outcome.LOST, Outcome.OPEN)[index % 3]
        created = NOW - timedelta(days=120 + 10 * index)
        deals.append(Deal(
            id=f"{prefix}{index}", name=name, company=name.split()[0], industry=industry, region="emea",
            notes=notes, value=20_000.0 * (index + 1), currency="USD", stage="proposal",
            probability=0.2 + 0.1 * index, created_time=created, stage_entered_time=created + timedelta(days=30),
            stage_history=(StageChange("discovery", created), StageChange("proposal", created + timedelta(days=30))),
            activity_counts=ActivityCounts(emails=5 + index, meetings=index, calls=2), contact_count=index + 1,
            last_activity_time=NOW - timedelta(days=3 * index), competitor_present=index % 2 == 0,
            outcome=outcome, closed_time=NOW - timedelta(days=index) if outcome is not Outcome.OPEN else None,
            expected_close_time=datetime(2027, 2, 1 + index, tzinfo=UTC), owner_id=f"rep-{index % 2}",
            numeric_attributes={"seats": 50.0 * (index + 1)}, categorical_attributes={"lead_source": "webinar"},
        ))
    return deals


def open_pipeline(prefix: str = "o", count: int = 5) -> list[Deal]:
    return [
        Deal(id=f"{prefix}{i}", name=f"Open deal {i}", value=10_000.0 * (i + 1), currency="USD",
             probability=0.1 + 0.15 * (i % 6), stage="proposal",
             expected_close_time=datetime(2027, 2, 1 + i % 28, tzinfo=UTC))
        for i in range(count)
    ]
