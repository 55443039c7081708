"""Insights on a deal, the rep's feedback, the outcome, and the training data
they become.

The insight set is stored under its id; feedback names that id (and, here, one
insight of it), the outcome closes the loop, and the export streams the
labelled examples a new model is trained on.

    VECTOROS_ADDRESS=127.0.0.1:50051 VECTOROS_TOKEN=vos_... VECTOROS_WORKSPACE=demo \
        python clients/python/examples/insights_feedback.py
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

from vectoros_client import ActivityCounts, Client, Deal, ExportFormat, FeedbackRating, Outcome

ADDRESS = os.environ.get("VECTOROS_ADDRESS", "127.0.0.1:50051")
TOKEN = os.environ.get("VECTOROS_TOKEN")  # None: a server without --tokens-file


def main() -> None:
    workspace = os.environ.get("VECTOROS_WORKSPACE", "demo")
    now = datetime.now(UTC)
    deal = Deal(
        id="example-insights-1", workspace_id=workspace, name="Wayne logistics suite", company="Wayne Enterprises",
        industry="logistics", region="na", stage="proposal", value=140_000, currency="USD", probability=0.5,
        notes="Champion left last month; new VP wants a security review; competitor shortlisted.",
        competitor_present=True, created_time=now - timedelta(days=80), stage_entered_time=now - timedelta(days=35),
        expected_close_time=now + timedelta(days=20), last_activity_time=now - timedelta(days=18),
        activity_counts=ActivityCounts(emails=9, meetings=2), contact_count=1,
    )
    with Client(ADDRESS, token=TOKEN) as client:
        insights = client.generate_insights(deal)
        print(f"{len(insights.insights)} insights by {insights.generator}, win {insights.win_probability:.2f} "
              f"(scorer v{insights.scorer.version}), set {insights.insight_set_id}")
        for insight in insights.insights:
            print(f"  [{insight.type.value}] {insight.title} ({insight.confidence:.2f})")
        first = insights.insights[0]
        feedback = client.record_feedback(
            workspace, insights.insight_set_id, FeedbackRating.HELPFUL, insight_id=first.id, acted_on=True,
            comment="Booked the security review.", idempotency_key=f"{insights.insight_set_id}:{first.id}:rep-7",
        )
        again = client.record_feedback(
            workspace, insights.insight_set_id, FeedbackRating.HELPFUL, insight_id=first.id, acted_on=True,
            comment="Booked the security review.", idempotency_key=f"{insights.insight_set_id}:{first.id}:rep-7",
        )
        print(f"feedback {feedback.feedback_id} recorded; sent again: duplicate={again.duplicate}")
        client.record_outcome(workspace, deal.id, Outcome.WON, closed_time=now, final_value=135_000)
        print("outcome recorded: won")
        mine = [json.loads(line) for line in client.export_training_data(workspace, ExportFormat.LABELLED_EXAMPLES)]
        mine = [example for example in mine if example["generated"]["insight_set_id"] == insights.insight_set_id]
        example = mine[0]
        print(f"exported example: {len(example['feedback'])} feedback, outcome {example['outcome']['outcome']}")


if __name__ == "__main__":
    main()
