"""The auto-embed pipeline: keep the similarity store in step with the CRM.

Call `on_deal_saved` from the CRM's create and update hooks and `on_deal_deleted`
from its delete hook. The server embeds the deal's text (the deal-to-text
template) and stores the vector under (workspace, deal id); an update that does
not change the text (a new probability, a new date) keeps the stored vector and
is counted as `unchanged`. `embed_deals` gives the same vector to a caller that
also keeps its own index.

    VECTOROS_ADDRESS=127.0.0.1:50051 VECTOROS_TOKEN=vos_... VECTOROS_WORKSPACE=demo \
        python clients/python/examples/auto_embed.py
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from vectoros_client import Client, Deal, UpsertResult

ADDRESS = os.environ.get("VECTOROS_ADDRESS", "127.0.0.1:50051")
TOKEN = os.environ.get("VECTOROS_TOKEN")  # None: a server without --tokens-file


def on_deal_saved(client: Client, workspace_id: str, deal: Deal) -> UpsertResult:
    """Created or updated in the CRM: (re)embed and store it. Safe to repeat."""
    return client.upsert_deals(workspace_id, [deal])


def on_deal_deleted(client: Client, workspace_id: str, deal_id: str) -> bool:
    """Deleted in the CRM: forget it; False when it was not stored."""
    return client.delete_deals(workspace_id, [deal_id]) == 1


def main() -> None:
    workspace = os.environ.get("VECTOROS_WORKSPACE", "demo")
    with Client(ADDRESS, token=TOKEN) as client:
        deal = Deal(
            id="example-auto-embed-1", name="Initech data platform", company="Initech", industry="software",
            region="na", stage="discovery", value=64_000, currency="USD", probability=0.3,
            notes="Evaluating a move off their on-prem warehouse; CFO sponsors it.",
            created_time=datetime(2026, 11, 2, tzinfo=UTC),
        )
        created = on_deal_saved(client, workspace, deal)
        print(f"created: {created.upserted} stored, {created.unchanged} unchanged "
              f"(embedder v{created.embedder.version})")

        moved = on_deal_saved(client, workspace, replace(deal, probability=0.45, stage="discovery"))
        print(f"probability changed: {moved.upserted} stored, {moved.unchanged} unchanged (text is the same)")

        edited = replace(deal, notes=deal.notes + " Security review booked for next week.")
        rewritten = on_deal_saved(client, workspace, edited)
        print(f"notes changed: {rewritten.upserted} stored, {rewritten.unchanged} unchanged (re-embedded)")

        vector = client.embed_deals([edited]).vectors[0]
        print(f"its vector: {vector.shape[0]} float32 values, norm {np.linalg.norm(vector):.3f}")

        print(f"deleted: {on_deal_deleted(client, workspace, deal.id)}")


if __name__ == "__main__":
    main()
