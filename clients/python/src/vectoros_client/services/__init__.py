"""One module per service of the API: the result types it returns and the
functions that build its calls (`vectoros_client.calls`) from Python values."""
