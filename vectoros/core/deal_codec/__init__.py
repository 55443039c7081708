"""Every form of a `DealRecord`, in one place: `proto` (the API's Deal),
`payload` (JSON in a vector-store payload and a ledger snapshot), `row` (a CSV / JSON Lines training row)."""
