"""Training and export: deal records, synthetic data, the win/loss scorer, the embedder."""
