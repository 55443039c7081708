#!/usr/bin/env python3
"""Call every service of a running server once and print what came back.

    python scripts/smoke.py [--address 127.0.0.1:50051] [--workspace demo] [--token vos_...]

Uses the demo workspace that `scripts/build_demo.py` stores and the client
package (`clients/python`, installed by scripts/setup.sh). The token defaults
to $VECTOROS_TOKEN, else to the demo token `scripts/run-server.sh` wrote
(./data/demo-token). Exit 1 on any error.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from vectoros_client import ActivityCounts, ApiError, Client, Deal

SERVICES = ["Embedding", "Similarity", "Scoring", "Forecast", "Insight"]


def sample_deal(workspace: str) -> Deal:
    return Deal(
        id="smoke-1",
        workspace_id=workspace,
        name="Acme analytics platform",
        company="Acme Corp",
        industry="software",
        region="emea",
        notes="Champion in finance; security review pending; competitor shortlisted.",
        value=85_000,
        currency="USD",
        stage="proposal",
        probability=0.6,
        competitor_present=True,
        contact_count=1,
        created_time=datetime(2026, 8, 1, tzinfo=UTC),
        stage_entered_time=datetime(2026, 10, 1, tzinfo=UTC),
        expected_close_time=datetime(2026, 12, 15, tzinfo=UTC),
        last_activity_time=datetime(2026, 10, 20, tzinfo=UTC),
        activity_counts=ActivityCounts(emails=6, meetings=2),
    )


def _demo_token() -> str | None:
    path = Path(__file__).resolve().parent.parent / "data" / "demo-token"
    return path.read_text().strip() or None if path.is_file() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--workspace", default="demo")
    parser.add_argument("--token", default=os.environ.get("VECTOROS_TOKEN") or _demo_token())
    args = parser.parse_args()
    deal = sample_deal(args.workspace)
    with Client(args.address, token=args.token) as client:
        try:
            for name in SERVICES:
                serving = client.serving(f"vectoros.v1.{name}Service")
                print(f"health {name}Service: {'SERVING' if serving else 'NOT_SERVING'}")
            embedded = client.embed([deal.notes, ""])
            print(
                f"Embed: {len(embedded.vectors)} vectors of {embedded.dimension}"
                f" by embedder v{embedded.model.version}"
            )
            score = client.score_deal(deal)
            factors = ", ".join(f"{f.feature} {f.contribution:+.2f}" for f in score.top_factors[:3])
            print(
                f"ScoreDeal: win {score.win_probability:.2f}, risk {score.risk_level.name}, "
                f"scorer v{score.model.version}; top factors: {factors}"
            )
            similar = client.find_similar_deals(args.workspace, deal=deal, top_k=5)
            summary = similar.summary
            print(
                f"FindSimilarDeals: {len(similar.matches)} matches, best {similar.matches[0].score:.3f}; "
                f"won {summary.won_count} lost {summary.lost_count}, weighted win rate {summary.weighted_win_rate:.2f}"
                if similar.matches
                else "FindSimilarDeals: no matches (is the demo workspace stored?)"
            )
            result = client.forecast(
                [deal], start=datetime(2026, 10, 1, tzinfo=UTC), end=datetime(2027, 1, 1, tzinfo=UTC)
            ).result
            print(
                f"Forecast: mean {result.mean:,.0f} (P10 {result.p10:,.0f}, P90 {result.p90:,.0f}), "
                f"weighted pipeline {result.weighted_pipeline:,.0f}"
            )
            insights = client.generate_insights(deal)
            print(
                f"GenerateInsights ({insights.generator}): {len(insights.insights)} insights, "
                f"win {insights.win_probability:.2f}"
            )
            for insight in insights.insights[:4]:
                print(f"  [{insight.type.name}] {insight.title}: {insight.description}")
        except ApiError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
