"""A hand-built, public-shaped deal file: B2B opportunities with custom columns.

Shaped like the well-known public "CRM sales opportunities" sample (a sales
pipeline joined with its accounts, products and sales teams): one row per
opportunity, engaged on `created_at`, won or lost on `closed_at`, scored as of
creation (`snapshot_at` left empty). Beside the schema's own columns it has
the custom columns such an export carries, none of which the feature code knows:

- categorical: product, series, manager, office_location, subsidiary_of, account
- numeric: sales_price, account_revenue (millions), account_employees, year_established
- and two leaks a CRM export typically has: `close_value` (the amount booked at
  closing: 0 for every lost deal) and `contract_signed_at` (a date only won deals
  have, after the snapshot). The date rule drops the second; the leakage screen
  must catch the first.

The outcome depends on the agent, the product's fit with the account's sector,
price against account size and the account's revenue, with noise. Its
generating code shares nothing with `training.synth`.

    python -m training.examples.crm_opportunities --rows 4000 --seed 1 --out crm.csv
"""

from __future__ import annotations

import argparse
import csv
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

PRODUCTS = {  # name: (series, list price)
    "GTX Basic": ("GTX", 550), "GTX Pro": ("GTX", 4821), "MG Special": ("MG", 55),
    "MG Advanced": ("MG", 3393), "GTX Plus Basic": ("GTX", 1096), "GTX Plus Pro": ("GTX", 5482),
    "GTK 500": ("GTK", 26768),
}
SECTORS = ("technology", "medical", "retail", "software", "entertainment", "finance", "marketing",
           "telecommunications", "services", "employment")
OFFICES = ("Central", "East", "West")
LOCATIONS = ("United States", "Philippines", "Kenya", "Norway", "Germany", "Japan", "Brazil")
END = datetime(2025, 3, 31, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def build_rows(rows: int, seed: int = 1) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    managers = [f"manager-{i}" for i in range(6)]
    agents = [(f"agent-{i:02d}", managers[i % 6], OFFICES[i % 6 // 2], float(rng.normal(0, 0.5))) for i in range(30)]
    accounts = []
    for i in range(85):
        revenue = float(np.round(rng.lognormal(math.log(900), 1.2), 2))
        accounts.append({
            "account": f"account-{i:02d}",
            "sector": SECTORS[rng.integers(len(SECTORS))],
            "year_established": int(rng.integers(1979, 2018)),
            "revenue": revenue,
            "employees": int(max(10, revenue * rng.uniform(1.5, 6.0))),
            "office_location": LOCATIONS[min(rng.geometric(0.5) - 1, len(LOCATIONS) - 1)],
            "subsidiary_of": f"account-{rng.integers(85):02d}" if rng.random() < 0.2 else "",
        })
    fit = {(series, sector): float(rng.normal(0, 1.0)) for series in ("GTX", "MG", "GTK") for sector in SECTORS}
    products = list(PRODUCTS)
    out = []
    for index in range(rows):
        name, manager, office, skill = agents[rng.integers(len(agents))]
        account = accounts[rng.integers(len(accounts))]
        product = products[rng.integers(len(products))]
        series, price = PRODUCTS[product]
        value = round(price * float(rng.uniform(0.8, 1.25)), 2)
        created = END - timedelta(days=float(rng.uniform(3, 730)))
        # Expensive products for small accounts rarely close; the sector fit and
        # the agent matter; old, large accounts buy a little more often.
        affordability = math.log(price / 1000.0) - math.log(account["revenue"] / 900.0)
        logit = (
            0.3 + skill + fit[(series, account["sector"])]
            - 0.55 * max(0.0, affordability)
            + 0.15 * (2018 - account["year_established"]) / 10
            + rng.normal(0, 0.6)
        )
        won = rng.random() < 1 / (1 + math.exp(-logit))
        cycle = float(rng.gamma(2.0, 22.0 if won else 30.0)) * (1.4 if series == "GTK" else 1.0)
        closed = created + timedelta(days=cycle)
        is_open = closed > END
        outcome = "open" if is_open else "won" if won else "lost"
        out.append({
            "deal_id": f"OPP{index:06d}",
            "outcome": outcome,
            "value": value,
            "created_at": _iso(created),
            "closed_at": "" if is_open else _iso(max(closed, created + timedelta(days=1))),
            "owner_id": name,
            "industry": account["sector"],
            "region": office,
            "currency": "USD",
            "product": product,
            "series": series,
            "sales_price": price,
            "manager": manager,
            "account": account["account"],
            "account_revenue": account["revenue"],
            "account_employees": account["employees"],
            "year_established": account["year_established"],
            "office_location": account["office_location"],
            "subsidiary_of": account["subsidiary_of"],
            "close_value": "" if is_open else (round(value * float(rng.uniform(0.9, 1.1)), 2) if won else 0),
            "contract_signed_at": _iso(max(closed, created + timedelta(days=1))) if outcome == "won" else "",
        })
    return out


def write_csv(rows: int, seed: int, path: str | Path) -> Path:
    path = Path(path)
    data = build_rows(rows, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(data[0]))
        writer.writeheader()
        writer.writerows(data)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(write_csv(args.rows, args.seed, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
