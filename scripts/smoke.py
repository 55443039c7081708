#!/usr/bin/env python3
"""Call every service of a running server once and print what came back.

    python scripts/smoke.py [--address 127.0.0.1:50051] [--workspace demo]

Uses the demo workspace that `scripts/build_demo.py` stores. Exit 1 on any error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from clients import VectorOSClient  # noqa: E402
from vectoros.v1 import (  # noqa: E402
    common_pb2,
    embedding_pb2,
    forecast_pb2,
    insight_pb2,
    scoring_pb2,
    similarity_pb2,
)

SERVICES = ["Embedding", "Similarity", "Scoring", "Forecast", "Insight"]


def sample_deal(workspace: str) -> common_pb2.Deal:
    deal = common_pb2.Deal(
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
    )
    deal.created_time.FromJsonString("2026-08-01T00:00:00Z")
    deal.stage_entered_time.FromJsonString("2026-10-01T00:00:00Z")
    deal.expected_close_time.FromJsonString("2026-12-15T00:00:00Z")
    deal.last_activity_time.FromJsonString("2026-10-20T00:00:00Z")
    deal.activity_counts.emails = 6
    deal.activity_counts.meetings = 2
    return deal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--workspace", default="demo")
    args = parser.parse_args()
    deal = sample_deal(args.workspace)
    with VectorOSClient(args.address) as client:
        try:
            for name in SERVICES:
                serving = client.serving(f"vectoros.v1.{name}Service")
                print(f"health {name}Service: {'SERVING' if serving else 'NOT_SERVING'}")
            embedded = client.embedding.Embed(embedding_pb2.EmbedRequest(texts=[deal.notes, ""]))
            print(
                f"Embed: {len(embedded.embeddings)} vectors of {embedded.dimension}"
                f" by embedder v{embedded.model.version}"
            )
            score = client.scoring.ScoreDeal(scoring_pb2.ScoreDealRequest(deal=deal)).score
            factors = ", ".join(f"{f.feature} {f.contribution:+.2f}" for f in score.top_factors[:3])
            print(
                f"ScoreDeal: win {score.win_probability:.2f}, risk {scoring_pb2.RiskLevel.Name(score.risk_level)}, "
                f"scorer v{score.model.version}; top factors: {factors}"
            )
            similar = client.similarity.FindSimilarDeals(
                similarity_pb2.FindSimilarDealsRequest(workspace_id=args.workspace, deal=deal, top_k=5)
            )
            summary = similar.summary
            print(
                f"FindSimilarDeals: {len(similar.matches)} matches, best {similar.matches[0].score:.3f}; "
                f"won {summary.won_count} lost {summary.lost_count}, weighted win rate {summary.weighted_win_rate:.2f}"
                if similar.matches
                else "FindSimilarDeals: no matches (is the demo workspace stored?)"
            )
            request = forecast_pb2.ForecastRequest(deals=[deal])
            request.period.start_time.FromJsonString("2026-10-01T00:00:00Z")
            request.period.end_time.FromJsonString("2027-01-01T00:00:00Z")
            result = client.forecast.Forecast(request).result
            print(
                f"Forecast: mean {result.mean:,.0f} (P10 {result.p10:,.0f}, P90 {result.p90:,.0f}), "
                f"weighted pipeline {result.weighted_pipeline:,.0f}"
            )
            insights = client.insight.GenerateInsights(insight_pb2.GenerateInsightsRequest(deal=deal))
            print(
                f"GenerateInsights ({insights.generator}): {len(insights.insights)} insights, "
                f"win {insights.win_probability:.2f}"
            )
            for insight in insights.insights[:4]:
                print(f"  [{insight_pb2.InsightType.Name(insight.type)}] {insight.title}: {insight.description}")
        except grpc.RpcError as error:
            print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
