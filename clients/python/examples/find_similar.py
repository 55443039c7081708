"""Find the past deals most like a deal, and what became of them.

Three ways to ask, inside one workspace: a deal that is not stored (a new
lead), a stored deal by its id, or free text. The summary weighs the closed
matches by similarity into a win rate.

    VECTOROS_ADDRESS=127.0.0.1:50051 VECTOROS_TOKEN=vos_... VECTOROS_WORKSPACE=demo \
        python clients/python/examples/find_similar.py
"""

from __future__ import annotations

import os

from vectoros_client import Client, Deal, Outcome, SimilarDeals, SimilarityFilter

ADDRESS = os.environ.get("VECTOROS_ADDRESS", "127.0.0.1:50051")
TOKEN = os.environ.get("VECTOROS_TOKEN")  # None: a server without --tokens-file


def show(title: str, found: SimilarDeals) -> None:
    summary = found.summary
    print(f"{title}: {len(found.matches)} matches, won {summary.won_count}, lost {summary.lost_count}, "
          f"weighted win rate {summary.weighted_win_rate:.2f}")
    for match in found.matches:
        print(f"  {match.score:.3f}  {match.deal.id:<24} {match.deal.outcome.value:<5} {match.deal.name}")


def main() -> None:
    workspace = os.environ.get("VECTOROS_WORKSPACE", "demo")
    with Client(ADDRESS, token=TOKEN) as client:
        lead = Deal(
            id="new-lead", name="Hooli analytics rollout", company="Hooli", industry="software", stage="discovery",
            value=90_000, currency="USD", notes="Replacing a legacy BI tool; procurement involved early.",
        )
        closed_only = SimilarityFilter(outcomes=[Outcome.WON, Outcome.LOST])
        by_deal = client.find_similar_deals(workspace, deal=lead, top_k=5, filter=closed_only)
        show("like the new lead (closed deals only)", by_deal)
        if by_deal.matches:
            stored = by_deal.matches[0].deal.id
            show(f"like stored deal {stored}", client.find_similar_deals(workspace, deal_id=stored, top_k=3))
        show("free text", client.find_similar_deals(workspace, text="security review delayed the renewal", top_k=3))


if __name__ == "__main__":
    main()
