import os
from datetime import UTC, datetime

from vectoros_client import Client, Deal

with Client(os.environ["VECTOROS_ADDRESS"], token=os.environ["VECTOROS_TOKEN"]) as client:
    deal = Deal(id="d-42", workspace_id="acme", name="Acme renewal", notes="Security review passed.", value=120_000,
                currency="USD", probability=0.6, expected_close_time=datetime(2027, 2, 10, tzinfo=UTC))
    client.upsert_deals("acme", [deal])  # embedded and stored; call again on every update
    score = client.score_deal(deal)
    similar = client.find_similar_deals("acme", deal=deal, top_k=5)
    print(f"win {score.win_probability:.2f} ({score.risk_level}), similar: {[m.deal.id for m in similar.matches]}")
