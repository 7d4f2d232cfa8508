"""Cost ledger and governance: prices, request records, virtual keys, budgets, rate limits."""
