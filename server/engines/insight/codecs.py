"""What the ledger stores of an insight set: the insights as JSON, and the cache
key of the context they were generated from.

The key is the SHA-256 of the deal snapshot (every field but the snapshot time),
the scorer and embedder versions, the generator id and the UTC day. The day is
in the key because the context holds durations ("no activity for 23 days") that
change with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from server.engines.insight.context import ModelRef
from server.engines.insight.types import Evidence, Insight, InsightType
from vectoros.core.deal_codec.payload import record_to_dict
from vectoros.core.deals import DealRecord


def context_key(
    record: DealRecord, scorer: ModelRef, embedder: ModelRef, generator_id: str, now: datetime
) -> str:
    """The cache key of a context (see the module docstring)."""
    material = json.dumps(
        [
            # Every field but the snapshot time, keys sorted: a protobuf map arrives in
            # no fixed order, and the same deal must give the same key in every process.
            record_to_dict(record),
            [scorer.name, scorer.version],
            [embedder.name, embedder.version],
            generator_id,
            now.astimezone(UTC).date().isoformat(),
        ],
        separators=(",", ":"),
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def insights_to_json(insights: Sequence[Insight]) -> str:
    return json.dumps(
        [
            {
                "id": i.id,
                "type": i.type.value,
                "title": i.title,
                "description": i.description,
                "confidence": i.confidence,
                "actions": list(i.actions),
                "evidence": {
                    "factor_names": list(i.evidence.factor_names),
                    "similar_deal_ids": list(i.evidence.similar_deal_ids),
                },
            }
            for i in insights
        ],
        ensure_ascii=False,
    )


def insights_from_json(text: str) -> tuple[Insight, ...]:
    return tuple(
        Insight(
            id=i["id"],
            type=InsightType(i["type"]),
            title=i["title"],
            description=i["description"],
            confidence=i["confidence"],
            actions=tuple(i["actions"]),
            evidence=Evidence(tuple(i["evidence"]["factor_names"]), tuple(i["evidence"]["similar_deal_ids"])),
        )
        for i in json.loads(text)
    )

