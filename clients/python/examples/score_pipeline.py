"""Score a pipeline: the model's win probability beside the rep's, riskiest first.

    VECTOROS_ADDRESS=127.0.0.1:50051 VECTOROS_TOKEN=vos_... python clients/python/examples/score_pipeline.py
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from vectoros_client import ActivityCounts, Client, Deal

ADDRESS = os.environ.get("VECTOROS_ADDRESS", "127.0.0.1:50051")
TOKEN = os.environ.get("VECTOROS_TOKEN")  # None: a server without --tokens-file


def pipeline(now: datetime) -> list[Deal]:
    def deal(number: int, name: str, value: float, probability: float, stage: str, quiet_days: int) -> Deal:
        return Deal(
            id=f"pipe-{number}", name=name, value=value, currency="USD", probability=probability, stage=stage,
            created_time=now - timedelta(days=90), stage_entered_time=now - timedelta(days=20 + quiet_days),
            expected_close_time=now + timedelta(days=30), last_activity_time=now - timedelta(days=quiet_days),
            activity_counts=ActivityCounts(emails=12 - quiet_days // 5, meetings=3, calls=2), contact_count=3,
        )

    return [
        deal(1, "Acme renewal", 120_000, 0.8, "negotiation", 2),
        deal(2, "Globex expansion", 45_000, 0.6, "proposal", 25),
        deal(3, "Umbrella pilot", 18_000, 0.4, "discovery", 40),
        deal(4, "Stark platform", 300_000, 0.5, "proposal", 8),
    ]


def main() -> None:
    now = datetime.now(UTC)
    deals = pipeline(now)
    with Client(ADDRESS, token=TOKEN) as client:
        scores = client.score_deals(deals, top_factors=3)
    print(f"scored {len(scores)} deals with scorer v{scores[0].model.version}")
    by_id = {deal.id: deal for deal in deals}
    for score in sorted(scores, key=lambda s: s.win_probability):
        deal = by_id[score.deal_id]
        factor = score.top_factors[0] if score.top_factors else None
        why = f"{factor.feature} {factor.contribution:+.2f}" if factor else "-"
        print(f"  {deal.name:<18} model {score.win_probability:.2f}  rep {deal.probability:.2f}  "
              f"risk {score.risk_level.value:<6} main factor: {why}")
    model = sum(by_id[s.deal_id].value * s.win_probability for s in scores)
    rep = sum(deal.value * (deal.probability or 0.0) for deal in deals)
    print(f"weighted pipeline: model {model:,.0f} vs rep {rep:,.0f} USD")


if __name__ == "__main__":
    main()
