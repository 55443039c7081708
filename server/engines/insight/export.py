"""Training data from the ledger: a workspace's insight sets, their feedback and
the deals' outcomes as JSON Lines, in one of the `ExportFormat`s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

from server.engines.insight.dates import iso
from server.engines.insight.prompt import chat_messages
from server.engines.insight.types import ExportFormat, Rating
from server.ledger import InsightSetRow, Ledger
from vectoros.core.deal_codec.payload import snapshot_from_json
from vectoros.core.deal_codec.row import record_to_row
from vectoros.core.deals import Outcome

LABELLED_SCHEMA = "vectoros.labelled_example.v1"


def export_lines(
    ledger: Ledger, workspace_id: str, export_format: ExportFormat, since: datetime | None = None
) -> Iterator[str]:
    """The workspace's training data as JSON Lines (see `server.services.insight`
    and `vectoros.cli.ledger` for the formats):

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
        page = list(take(sets, 500))
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
        answer = {k: generated[k] for k in ("win_probability", "win_probability_reasoning")}
        answer["insights"] = [{k: v for k, v in i.items() if k != "id"} for i in generated["insights"]]
        messages = chat_messages(json.loads(row.context_json))  # the prompt the Claude generator sends
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
            "created_at": iso(row.created_at),
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
                    "created_at": iso(f.created_at),
                }
                for f in feedback
            ],
            "outcome": None if outcome is None else {
                "outcome": outcome.outcome,
                "closed_at": iso(outcome.closed_at),
                "final_value": outcome.final_value,
            },
        },
        ensure_ascii=False,
    )


def take(lines: Iterator[str], count: int) -> list[str]:
    """The next `count` lines of `lines` (fewer at its end)."""
    batch = []
    for line in lines:
        batch.append(line)
        if len(batch) >= count:
            break
    return batch
