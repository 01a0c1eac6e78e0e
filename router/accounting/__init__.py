"""Money and limits: API keys and tenants, rate limits, budgets, the cost ledger."""
