"""The deal-to-text template (`vectoros.core.deal_text`): what an embedder reads of a deal."""

from __future__ import annotations

import dataclasses

from vectoros.core.deal_text import TEMPLATE_VERSION, VALUE_BANDS, deal_to_text, value_band
from vectoros.core.deals import DealRecord, Outcome


def test_deal_text_renders_fields_in_order_and_skips_missing_ones():
    deal = DealRecord(
        deal_id="d-1",
        name="  Acme\nrenewal ",
        company="Acme Corp",
        industry="software",
        region="emea",
        stage="proposal",
        value=48_000,
        currency="EUR",
        competitor_present=True,
        notes="Procurement wants\t3-year terms",
        outcome=Outcome.WON,
    )
    assert deal_to_text(deal) == (
        "Deal: Acme renewal. Company: Acme Corp. Industry: software. Region: emea. Stage: proposal. "
        "Value: 10k-50k EUR. Competitor: present. Notes: Procurement wants 3-year terms"
    )
    assert deal_to_text(DealRecord(deal_id="d-2", company="Globex", competitor_present=False)) == (
        "Company: Globex. Competitor: none."
    )
    assert deal_to_text(DealRecord(deal_id="d-3")) == ""
    assert TEMPLATE_VERSION == "deal-text-v1"


def test_deal_text_ignores_ids_outcome_and_exact_amounts():
    base = DealRecord(deal_id="a", workspace_id="w1", company="Initech", value=52_000, currency="USD")
    other = dataclasses.replace(base, deal_id="b", workspace_id="w2", value=58_000, outcome=Outcome.LOST)
    assert deal_to_text(base) == deal_to_text(other)
    assert deal_to_text(dataclasses.replace(base, value=120_000)) != deal_to_text(base)


def test_value_bands_cover_every_positive_amount_in_order():
    assert value_band(0) is None and value_band(float("nan")) is None and value_band(-5) is None
    one_per_band = (1, 10_000, 60_000, 150_000, 300_000, 600_000, 2e6, 1e9)
    assert [value_band(v) for v in one_per_band] == [label for _, label in VALUE_BANDS]
    assert value_band(9_999.99) == value_band(1) and value_band(49_999) == value_band(10_000)
