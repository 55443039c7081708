"""The deal-to-text template: how a deal becomes the text that is embedded.

Version ``deal-text-v1``. `EmbedDeals` and the similarity store render every
deal through `deal_to_text`; a vector is comparable only with vectors made by
the same embedder version *and* the same template version, so any change to
the output of this function, however small, needs a new `TEMPLATE_VERSION`
(and a re-embedding of stored deals).

The rendering, field by field, in this order, each as ``Label: value.`` and
left out entirely when the deal does not have it::

    Deal: {name}. Company: {company}. Industry: {industry}. Region: {region}.
    Stage: {stage}. Value: {band} {currency}. Competitor: {present|none}.
    Notes: {notes}

- Text fields have runs of whitespace (newlines, tabs) collapsed to one space
  and are stripped; a field that is then empty is left out. Case is kept (the
  model lower-cases anyway).
- ``Value`` is a band, not the amount: deals of 48,000 and 52,000 should read
  alike. Bands in the major unit of the currency: ``under 10k``, ``10k-50k``,
  ``50k-100k``, ``100k-250k``, ``250k-500k``, ``500k-1M``, ``1M-5M``,
  ``over 5M``; a value of 0 means "no amount" and leaves the field out. The
  currency is the deal's ISO code; no conversion is made.
- ``Competitor`` is ``present`` or ``none`` when known, left out when unknown.
- ``Notes`` come last: the model reads at most 256 tokens, so the structured
  fields always fit and long notes are what gets truncated.

Only these fields are read; ids, dates, activity counts, custom attributes and
the outcome are not part of the text (the outcome in particular must not be,
or similar-deal search would leak the answer it is used to predict).
"""

from __future__ import annotations

import re

from vectoros.core.deals import DealRecord

TEMPLATE_VERSION = "deal-text-v1"

# Upper bounds (exclusive) of the value bands and their labels.
VALUE_BANDS: tuple[tuple[float, str], ...] = (
    (10_000, "under 10k"),
    (50_000, "10k-50k"),
    (100_000, "50k-100k"),
    (250_000, "100k-250k"),
    (500_000, "250k-500k"),
    (1_000_000, "500k-1M"),
    (5_000_000, "1M-5M"),
    (float("inf"), "over 5M"),
)

_WHITESPACE = re.compile(r"\s+")


def clean(text: str) -> str:
    """Collapse whitespace runs to one space and strip."""
    return _WHITESPACE.sub(" ", text).strip()


def value_band(value: float) -> str | None:
    """The band label of a deal amount; None for 0 (no amount) or a non-finite value."""
    if not value > 0 or value == float("inf"):
        return None
    for upper, label in VALUE_BANDS:
        if value < upper:
            return label
    return None


def deal_to_text(deal: DealRecord) -> str:
    """Render `deal` with template `TEMPLATE_VERSION` (see the module docstring)."""
    parts: list[str] = []

    def add(label: str, value: str) -> None:
        value = clean(value)
        if value:
            parts.append(f"{label}: {value}.")

    add("Deal", deal.name)
    add("Company", deal.company)
    add("Industry", deal.industry)
    add("Region", deal.region)
    add("Stage", deal.stage)
    band = value_band(deal.value)
    if band is not None:
        add("Value", f"{band} {clean(deal.currency)}")
    if deal.competitor_present is not None:
        add("Competitor", "present" if deal.competitor_present else "none")
    notes = clean(deal.notes)
    if notes:
        # No trailing period added: notes are the caller's text as it is.
        parts.append(f"Notes: {notes}")
    return " ".join(parts)
